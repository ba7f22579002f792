"""Errors a user can cause, each rendered as one line by the CLI."""

from __future__ import annotations


class DeclutrError(Exception):
    """A user-facing error: the CLI prints its message (one line per problem, each after
    ``prefix``) and exits with ``exit_code``."""

    exit_code = 1
    prefix = "Error: "


class ConfigurationError(DeclutrError):
    """One or more problems in an experiment configuration.

    Each problem is one line that starts with the config key path, e.g.
    ``model.loss.temperature: expected float, got "abc"``.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of a library's multi-line message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def closest(word: str, choices) -> str | None:
    """The choice most similar to ``word``, if any is similar enough to suggest."""
    import difflib

    matches = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None
