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


def test_a_slip_of_a_request_parameter_points_at_param_and_the_error_is_short(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fresh user's --temprature 0 got "did you mean --template?", after some twenty lines
    of usage: temperature goes in --param, and the error is its line and a pointer to --help."""
    parser = Parser(prog="label")
    parser.add_argument("--template")
    parser.add_argument("--param", action="append")
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--temprature", "0"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "label: error: unrecognized arguments: --temprature 0; did you mean "
        "--param temperature=...?\n(see label --help)\n"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--templte", "x {a}"])  # a flag of its own still wins
    assert "did you mean --template?" in capsys.readouterr().err


def test_a_misspelt_command_is_told_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    from holysheep_nb.__main__ import main

    assert main(["lable", "data.csv"]) == 2
    assert capsys.readouterr().err.startswith("unknown command 'lable': did you mean label?")
