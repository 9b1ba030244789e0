"""The pipeline's own error for input that cannot be used as given, and the checks of its options.

The command line turns these (and store.ArtifactError, names.BadPatchName, FileNotFoundError,
model.config.ConfigError) into one ``error: ...`` line and exit code 2; any other exception is a
bug and keeps its traceback. Training settings are checked by model.config.TrainConfig; the checks
here are for the other options (--workers, --patients, --minutes, ...).
"""
from __future__ import annotations

import argparse
import math


class UsageError(ValueError):
    """An option or folder the user gave cannot be used; the message names it and the fix.

    A ValueError, so callers of the Python API that caught ValueError before still catch it.
    """


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or UsageError naming the option ``name``."""
    if isinstance(value, str) and not value.isascii():  # float() reads full-width and other digits
        raise UsageError(f"{name} must be a whole number in ASCII digits 0-9, got {value!r}")
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


def whole_number(minimum: int):
    """An argparse ``type`` for whole numbers >= ``minimum``: bad values stop before any work is done."""

    def parse(text: str) -> int:
        try:
            return check_int("the value", text, minimum)
        except UsageError:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {minimum}{_ascii_hint(text)}, "
                                             f"got {text!r}") from None

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int, non_negative_int = whole_number(1), whole_number(0)


def _ascii_hint(text: str) -> str:
    """What to add to a refusal of ``text`` when it is not ASCII (float() would read full-width digits)."""
    return "" if text.isascii() else " written in ASCII digits 0-9"


def positive_number(text: str) -> float:
    """An argparse ``type`` for a finite number above 0 (a time budget), in ASCII digits."""
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0{_ascii_hint(text)}, got {text!r}")
    return value
