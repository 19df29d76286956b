"""The one error type front ends turn into a single clear line."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a file that can't be used, with the file named.

    ``str(err)`` is ``"<path>: <problem>"``, the line the CLI prints and the
    napari widget shows as a notification.

    Args:
        path: the offending file (or a description such as ``"image"``).
        problem: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        lines = [ln.strip() for ln in str(problem).strip().splitlines() if ln.strip()]
        problem = lines[0] if lines else "unknown problem"  # always one line
        if problem.count("(") > problem.count(")"):
            problem += ")"
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class CheckpointError(InputError):
    """A checkpoint that is missing, corrupt, unsafe or not ours."""


class NoDropoutError(InputError, ValueError):
    """Monte Carlo dropout asked of a model without dropout (also a ``ValueError`` for API callers)."""


class SetupError(InputError, ValueError):
    """A device, precision or backend this machine or model cannot use (also a ``ValueError``, as before)."""
