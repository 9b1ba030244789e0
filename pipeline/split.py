"""Patient-level split into train / validation / test, stratified on each patient's IDC fraction.

Patches of one patient are strongly correlated (same slide, same stain), so splitting patches
rather than patients would leak tissue from training into evaluation and inflate every metric.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import store
from pipeline.errors import UsageError
from pipeline.store import SPLITS

DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def split_patients(patient_ids, labels, fractions=DEFAULT_FRACTIONS, seed: int = 0) -> dict[str, str]:
    """Assign every patient to one split; returns {patient_id: one of store.SPLITS}.

    Patients are ordered by positive fraction (random tie-break), shuffled within small blocks, and
    then each goes to the split furthest behind its target share, so every split spans the range of
    positive fractions (systematic stratification) and gets about its share of patients.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    per_patient = pd.DataFrame({"pid": np.asarray(patient_ids).astype(str), "y": np.asarray(labels)})
    pos_frac = per_patient.groupby("pid", sort=True)["y"].mean()
    if len(pos_frac) < 3:
        raise ValueError(f"need at least 3 patients for a train/val/test split, got {len(pos_frac)}")
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(pos_frac)), pos_frac.to_numpy()))
    block = max(2, int(round(1 / max(fractions.min(), 1e-3))))
    for start in range(0, len(order), block):
        rng.shuffle(order[start:start + block])
    assigned = np.zeros(3)
    out = {}
    for i, idx in enumerate(order):
        deficit = fractions * (i + 1) - assigned
        s = int(np.argmax(deficit))
        assigned[s] += 1
        out[str(pos_frac.index[idx])] = SPLITS[s]
    return out


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Patients, patches and IDC fraction per split (table has patient_id, label, split)."""
    g = table.groupby("split")
    return pd.DataFrame({
        "patients": g["patient_id"].nunique(),
        "patches": g.size(),
        "idc_fraction": g["label"].mean().round(3),
    }).reindex([s for s in SPLITS if s in g.groups])


def format_summary(run_dir: Path) -> str:
    """The run's split as the command line prints it: patients, patches and IDC share per split."""
    manifest = store.read_manifest(run_dir)
    table = manifest.assign(split=manifest["patient_id"].map(store.read_split(run_dir)["patients"]))
    summary = split_summary(table)
    return "split by patient:\n" + "\n".join(
        f"  {r.Index:<6}{r.patients:>5} patients {r.patches:>9,} patches  {r.idc_fraction:.1%} IDC"
        for r in summary.itertuples())


def stage_split(run_dir: Path, seed: int, fractions=DEFAULT_FRACTIONS) -> str:
    """The split stage of a run folder: split.json from the manifest, skipped when unchanged; its fingerprint."""
    ingest_fp = store.read_meta(run_dir)["stages"]["ingest"]["fingerprint"]
    fp = store.fingerprint(ingest_fp, seed, list(fractions))
    if not store.stage_done(run_dir, "split", fp, store.SPLIT):
        manifest = store.read_manifest(run_dir)
        try:
            assignment = split_patients(manifest["patient_id"], manifest["label"], fractions, seed)
        except ValueError as exc:  # too few patients or bad fractions: the data's or the caller's, not a bug
            raise UsageError(f"cannot split {run_dir / store.MANIFEST} by patient: {exc}") from None
        store.write_split(run_dir, assignment, seed, fractions)
        store.mark_stage(run_dir, "split", fp)
    return fp
