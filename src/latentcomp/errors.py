"""User-facing errors: one line that names the input and what would be accepted."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token


class LatentcompError(ValueError):
    """Raised for bad user input (files, specs, shapes). The CLI prints it as one line, no traceback."""


# How messages name parameters. The library speaks in Python's names (`max_minutes`); while the CLI runs
# a command it sets a spelling, so the same message names the flag (`--max-minutes`).
_SPELLING: ContextVar[Callable[[str], str] | None] = ContextVar("latentcomp_option_spelling", default=None)


def option(name: str) -> str:
    """The parameter `name` as a message should write it (see `spell_options`)."""
    spell = _SPELLING.get()
    return spell(name) if spell else name


def spell_options(spell: Callable[[str], str] | None) -> Token:
    """Name parameters with `spell` in messages from now on (None: Python's names); returns the token
    that `reset_spelling` takes to undo it."""
    return _SPELLING.set(spell)


def reset_spelling(token: Token) -> None:
    _SPELLING.reset(token)
