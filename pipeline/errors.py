"""The pipeline's own error for input that cannot be used as given.

The command line turns these (and store.ArtifactError, names.BadPatchName, FileNotFoundError)
into one ``error: ...`` line and exit code 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class UsageError(ValueError):
    """An option or folder the user gave cannot be used; the message names it and the fix.

    A ValueError, so callers of the Python API that caught ValueError before still catch it.
    """


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or UsageError naming the option ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{name} must be a whole number, got {value!r}") from None
        if not as_float.is_integer():
            raise UsageError(f"{name} must be a whole number, got {value!r}")
        value = int(as_float)
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {value}")
    return value
