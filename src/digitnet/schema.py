"""One readable phrase from a pydantic validation error, naming the key at fault.

Files users write or hand over (search spaces, ensemble manifests) are validated with pydantic;
the user should read which key is wrong and why, not a multi-line report.
"""

from __future__ import annotations

from pydantic import ValidationError


def key_path(loc: tuple[int | str, ...]) -> str:
    """``('space', 'hidden', 'choice', 2)`` -> ``space.hidden.choice[2]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith(("function-", "tagged-union", "union[")):  # pydantic's own labels
            text += f".{part}" if text else part
    return text


def first_problem(error: ValidationError) -> str:
    """The first error as ``key: what is wrong`` (``unknown key`` for a typo under ``extra="forbid"``)."""
    first = error.errors(include_url=False)[0]
    path = key_path(tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        return f"unknown key {path}"
    if first["type"] == "missing":
        return f"the key {path} is missing"
    message = str(first["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message[:1].lower() + message[1:]
    return f"{path}: {message}" if path else message
