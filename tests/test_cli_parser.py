"""Every command's parser answers a misspelt flag with the closest one it knows."""

from __future__ import annotations

import pytest

from holysheep_nb.cli_parser import Parser
from holysheep_nb.server import parse_cli


def test_a_misspelt_server_flag_is_told_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_cli(["--lattency", "1"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --lattency 1; did you mean --latency?" in (
        capsys.readouterr().err
    )


def test_a_flag_like_no_other_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    parser = Parser(prog="demo")
    parser.add_argument("--rows", type=int)
    with pytest.raises(SystemExit):
        parser.parse_args(["--rows=3", "--zzz", "--rowz=4"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzz --rowz=4; did you mean --rows?" in err
