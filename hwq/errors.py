"""Error types. A `UserError` is a mistake in the user's input: the CLI prints it and exits 2."""

from __future__ import annotations


class HwqError(Exception):
    """Base class of every error hwq raises on purpose."""


class UserError(HwqError, ValueError):
    """Bad input from the user (unknown model, bad bits, missing layer...). CLI exit code 2."""


class ProfileError(UserError):
    """An invalid device profile. `problems` lists every problem found in the file.

    Each problem is one line `FILE:LINE: key.path: expected ..., found ...`.
    """

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class GraphError(UserError):
    """A model that cannot be turned into a layer graph (names the module and the reason)."""


class CostModelError(UserError):
    """A cost model cannot price a layer at the requested bits (names the layer)."""


def reason(exc: BaseException) -> str:
    """`Type: first line of the message` of an exception, for a one-line error."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def user_code_failed(label: str, exc: BaseException) -> UserError:
    """The UserError for an exception raised in the user's own code (a model or data factory,
    a module imported by path): names the factory and the reason."""
    err = UserError(f"{label} failed: {reason(exc)} (hwq --debug shows its traceback)")
    err.__cause__ = exc
    return err
