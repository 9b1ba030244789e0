"""Strict parsing of the dataset's patch file names.

The public dataset names every patch ``<pid>_idx5_x<X>_y<Y>_class<C>.png`` inside ``<pid>/<C>/``.
Anything else (a stray file, a renamed patch, a folder label that disagrees with the name) is
rejected with a reason, so ingest can list it instead of guessing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PATCH_NAME = re.compile(r"^(?P<pid>\d+)_idx5_x(?P<x>\d+)_y(?P<y>\d+)_class(?P<label>[01])\.png$")
PATCH_SIZE = 50  # the dataset's patch side in pixels; coordinates step by this


@dataclass(frozen=True)
class PatchName:
    patient_id: str
    x: int
    y: int
    label: int


class BadPatchName(ValueError):
    """A file that is not a well-formed patch of the folder it sits in."""


def parse_patch_name(filename: str) -> PatchName:
    """Parse one file name; raise BadPatchName saying what is wrong."""
    m = PATCH_NAME.match(filename)
    if m is None:
        raise BadPatchName(
            f"name does not match <pid>_idx5_x<X>_y<Y>_class<0|1>.png: {filename!r}"
        )
    x, y = int(m["x"]), int(m["y"])
    if x < 1 or y < 1:
        raise BadPatchName(f"coordinates start at 1 in this dataset, got x={x}, y={y}: {filename!r}")
    return PatchName(m["pid"], x, y, int(m["label"]))


def check_patch_location(name: PatchName, patient_folder: str, label_folder: str) -> None:
    """Raise BadPatchName if the patch sits in another patient's or another label's folder."""
    if name.patient_id != patient_folder:
        raise BadPatchName(
            f"patient {name.patient_id} in the name but folder {patient_folder!r}; move the file "
            f"to {name.patient_id}/{name.label}/"
        )
    if label_folder not in ("0", "1"):
        raise BadPatchName(f"label folder must be 0 or 1, got {label_folder!r}")
    if int(label_folder) != name.label:
        raise BadPatchName(
            f"folder says class {label_folder} but the name says class{name.label}; the label is "
            f"ambiguous, fix the folder or the name"
        )
