"""The explanation check (issue: Grad-CAM must point at tissue that matters) runs on synthetic runs."""
import sys
from pathlib import Path

import numpy as np

from pipeline import store


def test_pointing_game_report_runs_on_a_synthetic_run(tiny_run, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "bench"))
    import report_pointing_game as report

    run = store.load_run(tiny_run)
    rows, masks = report.mixed_positive_patches(run, "all", max_patches=40)
    assert len(rows) > 0
    assert (run.table.loc[rows, "label"] == 1).all()
    share = masks.mean(axis=(1, 2))
    assert ((share > 0.1) & (share < 0.9)).all()
    monkeypatch.setattr(sys, "argv", ["report", "--run", str(tiny_run), "--split", "all", "--max", "20"])
    assert report.main() == 0
    out = capsys.readouterr().out
    for method in ("Grad-CAM", "Grad-CAM++", "Score-CAM"):
        assert f"{method} " in out and "vs chance" in out
    rate = float(out.split("Grad-CAM    hit rate ")[1].split("%")[0])
    assert 0 <= rate <= 100 and np.isfinite(rate)
