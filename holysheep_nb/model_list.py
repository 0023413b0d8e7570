"""What to say when a server does not know the model asked for: the ids it lists instead.

A run stops at a model-not-found 404 (OpenAI: "The model `gpt-4oo` does not exist or you do
not have access to it."). Before it says so, it asks the server's model list once, on the
run's own session: ``GET <base_url>/models``, whose answer is OpenAI's list object
(``{"object": "list", "data": [{"id": "gpt-4o", "object": "model", ...}, ...]}``, "List
models" in OpenAI's API reference). OpenRouter, DeepSeek, vLLM and Ollama's ``/v1`` answer
in the same shape. The advice then names the listed ids closest to the one asked for
(``difflib``), or says that the server lists it (so the key has no access to it), or how
many it lists. A list that cannot be had (an error, a timeout, another shape) leaves the
advice as it was, with the URL to ask.

Azure OpenAI has no such list per deployment (its models are the resource's deployments),
so nothing is asked there.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence

#: Seconds the one ``GET /models`` may take: the run has already stopped, and is waiting.
LIST_TIMEOUT = 5.0
#: Listed ids named as close to the one asked for, at most.
CLOSEST = 3
#: ``difflib`` similarity from which a listed id counts as close (its default, 0.6).
CLOSE_RATIO = 0.6
#: Ids named as examples when none is close.
EXAMPLES = 5


def listed_ids(raw: bytes) -> tuple[str, ...] | None:
    """The model ids of a ``GET /models`` answer, in the server's order; None for a body that
    is not OpenAI's list object."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    ids = (item.get("id") for item in items if isinstance(item, dict))
    return tuple(dict.fromkeys(name for name in ids if isinstance(name, str) and name))


def advice(model: str, models_url: str | None, listed: Sequence[str] | None) -> str:
    """What to do about ``model`` not being found: the closest of the ``listed`` ids, or
    where to look (``models_url``; None for Azure OpenAI, where model= is a deployment)."""
    if models_url is None:
        return "check model= (on Azure OpenAI, the name of a deployment of the resource)"
    where = f"GET {models_url} lists the models this server has"
    if listed is None:
        return f"check model= ({where})"
    if not listed:
        return f"check model=: this server lists no models ({where})"
    if model in listed:
        return (
            f"this server lists {model!r}, so the key has no access to it: check model= and "
            "the key's project or plan"
        )
    close = difflib.get_close_matches(model, listed, n=CLOSEST, cutoff=CLOSE_RATIO)
    count = f"{len(listed)} model{'s' if len(listed) != 1 else ''}"
    if close:
        names = " or ".join(repr(name) for name in close)
        return f"did you mean model={names}? (GET {models_url} lists the {count} this server has)"
    examples = ", ".join(repr(name) for name in listed[:EXAMPLES])
    more = ", ..." if len(listed) > EXAMPLES else ""
    return f"check model=: none of the {count} this server lists is close ({examples}{more})"
