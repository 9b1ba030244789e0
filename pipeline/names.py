"""The dataset's on-disk format: the folder layout's names and strict parsing of patch file names.

The public dataset names every patch ``<pid>_idx5_x<X>_y<Y>_class<C>.png`` inside ``<pid>/<C>/``.
Anything else (a stray file, a renamed patch, a folder label that disagrees with the name) is
rejected with a reason, so ingest can list it instead of guessing. The names of the other root
entries a dataset folder can hold (the archive's second copy, a synthetic cohort's marker and
region masks) are defined here too, for ingest, which reads such folders, and pipeline.synth,
which writes them. So is the default runs folder's name (``RUNS_DIR``), where the pipeline writes
run folders and the app and the bench scripts look for them.

Numbers are ASCII digits only: a regex digit class, ``str.isdigit()`` and ``int()`` also accept
full-width and other Unicode digits (a full-width "x9601" reads as x=9601, and ``str.isdigit()``
is True for a superscript two), which would turn a mangled name into a plausible coordinate or
patient id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# fullmatch, not ^...$: "$" also matches before a trailing newline, and a file name can end in one.
PATCH_NAME = re.compile(r"(?P<pid>[0-9]+)_idx5_x(?P<x>[0-9]+)_y(?P<y>[0-9]+)_class(?P<label>[01])\.png")
EXPECTED_NAME = "<pid>_idx5_x<X>_y<Y>_class<0|1>.png"
PATCH_SIZE = 50  # the dataset's patch side in pixels; coordinates step by this
ARCHIVE_SUBDIR = "IDC_regular_ps50_idx5"  # the archive as extracted holds every patient again in here
SYNTHETIC_MARKER = "SYNTHETIC_COHORT.json"  # at a synthetic cohort's root, written last: its metadata
MASK_DIR = "_region_masks"  # at a synthetic cohort's root: <pid>.png, the pixel-level IDC region
RUNS_DIR = "runs"  # the project's runs folder (relative to the project root): where run folders go by default
# Microns per pixel of the dataset's patches. Janowczyk & Madabhushi 2016 (J Pathol Inform 7:29, IDC use case;
# Cruz-Roa et al. 2014): the slides were scanned at 40x (about 0.25 um/px) and downsampled 16:1 to an apparent
# 2.5x before the 50 px patches were cut, so one pixel is about 4 um and a patch about 200 um across.
# Recorded in run.json as "mpp"; slides of other scanners are resampled to it (ingest-slides).
DATASET_MPP = 4.0


@dataclass(frozen=True)
class PatchName:
    patient_id: str
    x: int
    y: int
    label: int


class BadPatchName(ValueError):
    """A file that is not a well-formed patch of the folder it sits in."""


def is_patient_id(name: str) -> bool:
    """True for a patient folder name: one or more ASCII digits (not '\u00b2' or full-width digits)."""
    return name.isascii() and name.isdigit()


SLIDE_ID_MAX = 64  # characters of a whole-slide image's patient id (pipeline.ingest_slides makes them)


def is_slide_patient_id(name: str) -> bool:
    """True for a whole-slide image's patient id: 1..64 ASCII letters, digits, '-' and '_', not only '-' and '_'."""
    return (0 < len(name) <= SLIDE_ID_MAX and name.isascii() and all(c.isalnum() or c in "-_" for c in name)
            and bool(name.strip("-_")))


def parse_patch_name(filename: str) -> PatchName:
    """Parse one file name; raise BadPatchName saying what is wrong."""
    m = PATCH_NAME.fullmatch(filename)
    if m is None:
        odd = "".join(dict.fromkeys(c for c in filename if not c.isascii() or not c.isprintable()))
        hint = (f" (it holds the characters {odd!r}, which no patch name has: the numbers are ASCII "
                f"digits 0-9; rename the file)" if odd else "")
        raise BadPatchName(f"name does not match {EXPECTED_NAME}: {filename!r}{hint}")
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
