"""Two runs of one cohort compared (pipeline/compare_runs.py, the Compare runs page).

The second run is tiny_run with other scores written through store.write_scores (no training): a
noisier copy, one with a patient moved to another split, and copies that are not the same cohort
(other patient ids, flipped labels) or are broken.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import overlays
from pipeline import cli, compare_runs as cr, logistic, metrics, store, uncertainty

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "app" / "main.py")
N_BOOT = 200  # enough for the command-line checks; the page uses the default 1000


def copy_run(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(store.MODEL, f"{store.REVIEWS}*"))
    return dest


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run) -> dict[str, Path]:
    """runs/a (tiny_run), runs/b (noisier scores, one train patient moved to val), runs/other (another
    cohort: other patient ids), runs/relabelled (labels flipped), runs/broken (no scores)."""
    root = tmp_path_factory.mktemp("compare") / "runs"
    a = copy_run(tiny_run, root / "a")
    b = copy_run(tiny_run, root / "b")
    run = store.load_run(b)
    rng = np.random.default_rng(3)
    p = np.clip(run.table["prob"].to_numpy(np.float64), 1e-6, 1 - 1e-6)
    noisy = logistic.sigmoid(logistic.logit(p) + rng.normal(0.0, 1.5, p.size))
    store.write_scores(b, noisy, noisy)
    split = store.read_split(b)
    moved = sorted(pid for pid, s in split["patients"].items() if s == store.TRAIN)[0]
    store.write_split(b, {**split["patients"], moved: store.VAL}, split["seed"], split["fractions"])

    other = copy_run(tiny_run, root / "other")
    manifest = store.read_manifest(other)
    store.write_manifest(other, manifest.assign(patient_id="other-" + manifest["patient_id"].astype(str)))
    split = store.read_split(other)
    store.write_split(other, {f"other-{k}": v for k, v in split["patients"].items()}, split["seed"], split["fractions"])

    relabelled = copy_run(tiny_run, root / "relabelled")
    manifest = store.read_manifest(relabelled)
    store.write_manifest(relabelled, manifest.assign(label=(1 - manifest["label"]).astype("int8")))

    broken = copy_run(tiny_run, root / "broken")
    (broken / store.SCORES).unlink()
    (broken / store.SCORES).write_bytes(b"not parquet")
    return {"a": a, "b": b, "other": other, "relabelled": relabelled, "broken": broken, "moved": moved}


def run_cli(argv, capsys) -> tuple[int, str, str]:
    rc = cli.main(["compare-runs", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


# --------------------------------------------------------------------------- the command
def test_a_run_compared_with_itself_differs_by_exactly_zero(runs, tmp_path, capsys):
    out = tmp_path / "self.json"
    rc, printed, _ = run_cli([runs["a"], runs["a"], "--split", "all", "--n-boot", N_BOOT, "--out", out], capsys)
    assert rc == 0
    result = json.loads(out.read_text())
    c = result["comparison"]
    differences = [c["roc_auc"]["difference"], c["pr_auc"]["difference"],
                   *c["own"]["difference"].values(), *c["shared"]["difference"].values()]
    assert len(differences) == 2 + 2 * len(uncertainty.THRESHOLD_METRICS)
    for iv in differences:  # exactly 0, with a zero-width interval
        assert iv["estimate"] == 0.0 and iv["low"] == 0.0 and iv["high"] == 0.0, iv
    for at in ("own", "shared"):
        assert c[at]["mcnemar"]["p_exact"] == 1.0 and c[at]["mcnemar"]["n_discordant"] == 0
    assert c["roc_auc"]["delong_clustered"]["p_value"] == 1.0
    assert "better" not in result["sentence"] and "no detectable difference" in result["sentence"]
    assert result["sentence"] in " ".join(printed.split())  # printed, wrapped
    assert "B - A" in printed and "ROC-AUC (threshold-free)" in printed and "SYNTHETIC" in printed


def test_a_noisier_run_gets_the_right_counts_figures_and_a_sentence(runs, tmp_path, capsys):
    out = tmp_path / "ab.json"
    rc, printed, _ = run_cli([runs["a"], runs["b"], "--split", "all", "--n-boot", N_BOOT, "--out", out], capsys)
    assert rc == 0
    result = json.loads(out.read_text())
    a, b = store.load_run(runs["a"]), store.load_run(runs["b"])
    n, counts = len(a.table), result["counts"]
    assert counts["patches"] == counts["shared_patches"] == counts["patches_a"] == counts["patches_b"] == n
    assert counts["patients"] == a.table["patient_id"].nunique() and counts["positive"] == int(a.table["label"].sum())
    assert counts["dropped_split_patients"] == {"a_only": 0, "b_only": 0}  # all splits: nothing dropped
    c = result["comparison"]
    y, pa, pb = a.table["label"].to_numpy(), a.table["prob"].to_numpy(), b.table["prob"].to_numpy()
    assert c["roc_auc"]["difference"]["estimate"] == pytest.approx(metrics.roc_auc(y, pb) - metrics.roc_auc(y, pa))
    ta, tb = result["thresholds"]["a"]["threshold"], result["thresholds"]["b"]["threshold"]
    assert ta == a.thresholds["f1_optimal"] and result["thresholds"]["shared"]["threshold"] == cr.DEFAULT_SHARED
    f1 = metrics.metrics_at(y, pb, tb)["f1"] - metrics.metrics_at(y, pa, ta)["f1"]
    assert c["own"]["difference"]["f1"]["estimate"] == pytest.approx(f1)
    codes = cr.agreement_outcomes(y, pa, pb, ta, tb)
    assert c["own"]["mcnemar"]["only_a_correct"] == int((codes == cr.A_ONLY).sum())
    assert c["own"]["mcnemar"]["only_b_correct"] == int((codes == cr.B_ONLY).sum())
    assert result["sentence"].startswith(f"At each run's own threshold (A {ta:.3f}, B {tb:.3f}), ")
    assert "bootstrap resamples of the 5 patients" in result["sentence"]
    assert result["runs"]["a"]["name"] == "a" and result["runs"]["b"]["name"] == "b" and result["synthetic"]
    # The Python API gives the same result as the command.
    assert cr.compare_run_folders(runs["a"], runs["b"], "all", n_boot=N_BOOT)["sentence"] == result["sentence"]
    assert "DeLong's test of ROC-AUC B - A, clustered by patient" in printed and "McNemar" in printed


def test_patches_in_the_split_of_one_run_only_are_dropped_and_counted(runs, capsys):
    run = store.load_run(runs["a"])
    rc, printed, _ = run_cli([runs["a"], runs["b"], "--split", "train", "--n-boot", N_BOOT, "--shared", "0.4"],
                             capsys)
    assert rc == 0
    result = cr.compare_run_folders(runs["a"], runs["b"], "train", shared=0.4, n_boot=N_BOOT)
    counts = result["counts"]
    moved = (run.table["patient_id"] == runs["moved"]).to_numpy()
    train = (run.table["split"] == store.TRAIN).to_numpy()
    assert counts["patches"] == int((train & ~moved).sum())
    assert counts["dropped_split_patients"] == {"a_only": 1, "b_only": 0}
    assert counts["dropped_split_patches"] == {"a_only": int(moved.sum()), "b_only": 0}
    assert any(f"the runs' splits differ: 1 patient ({moved.sum():,} patches) in A's train split" in w
               for w in result["warnings"])
    assert result["thresholds"]["shared"] == {"threshold": 0.4, "source": "given on the command line"}
    assert "the runs' splits differ" in printed and "At the shared threshold 0.400" in printed


@pytest.mark.parametrize("which, expected", [
    ("other", ["run B (other) share no patch", "they are runs of different cohorts", "same --data folder"]),
    ("relabelled", ["are not runs of the same cohort", "disagree on the label of"]),
    ("broken", ["run B (", "cannot be opened", "scores.parquet is unreadable", "re-score"]),
])
def test_runs_that_cannot_be_compared_say_why_and_exit_2(runs, capsys, which, expected):
    rc, printed, err = run_cli([runs["a"], runs[which], "--split", "all", "--n-boot", N_BOOT], capsys)
    assert rc == 2 and printed == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    for text in expected:
        assert text in err, err


def test_a_split_of_one_patient_has_no_patient_bootstrap(runs, capsys):
    rc, _, err = run_cli([runs["a"], runs["b"], "--split", "test"], capsys)  # tiny_run's test split: 1 patient
    assert rc == 2
    assert "holds 1 patient scored by both runs" in err and "--split all" in err


def test_compare_runs_help_imports_no_tensorflow():
    code = ("import sys\nfrom pipeline import cli\ntry:\n    cli.main(['compare-runs', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print('HEAVY:' + ','.join(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--shared" in proc.stdout and proc.stdout.rsplit("HEAVY:", 1)[1].strip() == ""


# --------------------------------------------------------------------------- pure helpers
def test_agreement_outcomes_on_hand_made_patches():
    label = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1])
    prob_a = np.array([0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9])
    prob_b = np.array([0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.1, 0.9, np.nan])
    codes = cr.agreement_outcomes(label, prob_a, prob_b, 0.5, 0.5)
    assert codes.tolist() == [cr.BOTH_RIGHT, cr.A_ONLY, cr.B_ONLY, cr.BOTH_WRONG,
                              cr.BOTH_RIGHT, cr.A_ONLY, cr.B_ONLY, cr.BOTH_WRONG, -1]
    assert cr.agreement_names(label, prob_a, prob_b, 0.5, 0.5)[:4].tolist() == [
        "both right", "A only right", "B only right", "both wrong"]
    # Each run at its own threshold, a call at the threshold itself is IDC.
    assert cr.agreement_outcomes([1, 0], [0.3, 0.3], [0.3, 0.3], 0.3, 0.31).tolist() == [cr.A_ONLY, cr.B_ONLY]
    with pytest.raises(ValueError, match="lengths differ"):
        cr.agreement_outcomes([1, 0], [0.5], [0.5, 0.5], 0.5, 0.5)


def test_most_disagreeing_lists_only_differing_calls_largest_gap_first():
    rows = pd.DataFrame({"label": [1, 1, 0, 0, 1, 0]}, index=[10, 11, 12, 13, 14, 15])
    prob_a = np.array([0.9, 0.6, 0.2, 0.55, 0.2, 0.55])
    prob_b = np.array([0.1, 0.4, 0.99, 0.45, 0.3, 0.6])
    items = cr.most_disagreeing(rows, prob_a, prob_b, 0.5, 0.5)
    # row 14: both wrong, row 15: both wrong (same call): left out; the rest by |P_A - P_B|, ties in table order
    assert items.index.tolist() == [10, 12, 11, 13]
    assert items["gap"].tolist() == pytest.approx([0.8, 0.79, 0.2, 0.1])
    assert items["agreement"].tolist() == ["A only right", "A only right", "A only right", "B only right"]
    assert items.loc[12, "prob_b"] == 0.99
    assert cr.most_disagreeing(rows, prob_a, prob_a, 0.5, 0.5).empty  # a run never disagrees with itself


def test_pairing_keeps_both_runs_rows_and_counts_the_patches_one_run_lacks():
    a = pd.DataFrame({"patient_id": ["p", "p", "q", "q", "r"], "x": [1, 51, 1, 51, 1], "y": 1,
                      "label": [0, 1, 0, 1, 1], "split": ["test"] * 4 + ["train"], "prob": [0.1, 0.9, 0.2, 0.8, 0.7]})
    b = a.iloc[[4, 3, 2, 1]].reset_index(drop=True).assign(prob=[0.6, 0.4, 0.3, 0.2], split="test")
    pairs = cr.pair_tables(a, b)
    assert pairs.index.tolist() == [1, 2, 3, 4] and pairs["row_b"].tolist() == [3, 2, 1, 0]
    assert pairs["prob_b"].tolist() == [0.2, 0.3, 0.4, 0.6] and pairs["prob_a"].tolist() == [0.9, 0.2, 0.8, 0.7]
    rows, counts = cr.split_counts(pairs, "test")
    assert rows.index.tolist() == [1, 2, 3]  # r is in B's test split only
    assert (counts["only_a_patches"], counts["only_b_patches"], counts["patients"]) == (1, 0, 2)
    assert counts["dropped_split_patients"] == {"a_only": 0, "b_only": 1}
    paired = cr.paired_split(pairs, "test", n_boot=50)
    t = {"threshold": 0.5, "source": "test"}
    warnings = cr.compare_paired(paired, t, t, t)["warnings"]
    assert any("only the 4 patches both runs scored are compared (1 scored by A alone" in w for w in warnings)
    assert any("0 patients (0 patches) in A's test split but not B's and 1 patient (1 patch) in B's" in w
               for w in warnings)
    assert cr.paired_split(pairs, "train").boot is None  # no patient is in both train splits
    with pytest.raises(cli.UsageError, match="share no patch"):
        cr.pair_tables(a, b.assign(patient_id="other-" + b["patient_id"]))


def test_disagreement_overlay_colours_each_patch_by_who_is_right():
    rows = pd.DataFrame({"x": [1, 51, 101, 1], "y": [1, 1, 1, 51], "label": [1, 1, 0, 0]})
    prob_a, prob_b = np.array([0.9, 0.1, 0.9, 0.1]), np.array([0.1, 0.9, 0.9, np.nan])
    overlay = overlays.disagreement(rows, prob_a, prob_b, 0.5, 0.5, (2, 3))
    assert overlay.name == overlays.DISAGREEMENT and overlay.categorical
    assert overlay.labels == ("A only right", "B only right", "both right", "both wrong")
    assert set(overlay.colours) <= set(overlays.OKABE_ITO.values()) and len(set(overlay.colours)) == 4
    grid = overlay.grid
    assert grid[0].tolist() == [cr.A_ONLY, cr.B_ONLY, cr.BOTH_WRONG] and np.isnan(grid[1]).all()  # not scored by B
    only = overlays.disagreement(rows, prob_a, prob_b, 0.5, 0.5, (2, 3), agreeing=False).grid
    assert only[0, :2].tolist() == [cr.A_ONLY, cr.B_ONLY] and np.isnan(only[0, 2])
    rgb, visible = overlays.cell_colours(overlay)  # drawn like every other overlay (also in the PNG export)
    assert visible.sum() == 3 and tuple(rgb[0, 0]) == overlays.hex_to_rgb(overlays.AGREEMENT_COLOURS["A only right"])


# --------------------------------------------------------------------------- the page
def open_compare_page(monkeypatch, runs_dir: Path, **query) -> AppTest:
    monkeypatch.setenv("IDC_RUNS", str(runs_dir))
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.query_params.update({k: str(v) for k, v in query.items()})
    return at.run().switch_page("views/compare.py").run()


def test_compare_page_shows_the_table_the_sentence_and_the_disagreement_overlay(monkeypatch, runs):
    at = open_compare_page(monkeypatch, runs["a"].parent, run="a", split="all")
    assert not at.exception
    at.selectbox(key="w_compare_b").set_value("b").run()
    assert not at.exception
    expected = cr.compare_run_folders(runs["a"], runs["b"], "all")  # the page's defaults: F1-optimal, shared 0.5
    assert any(i.value == expected["sentence"] for i in at.info)
    assert any("SYNTHETIC" in w.value for w in at.warning)
    counts = expected["counts"]
    assert f"all splits: {counts['patients']} patients, {counts['patches']:,} patches" in at.caption[0].value
    own, shared = at.dataframe[0].value, at.dataframe[1].value
    assert own.to_dict(orient="records") == cr.table_rows(expected, "own")
    assert shared.to_dict(orient="records") == cr.table_rows(expected, "shared")
    assert any("McNemar" in m.value and "ignores clustering" in m.value for m in at.markdown)

    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace.get("name") for trace in chart["data"]]
    assert overlays.DISAGREEMENT in names
    assert {"A only right", "B only right", "both right", "both wrong"} <= set(names)  # the legend

    # The shared threshold is the sidebar's: moving it changes the shared table, not the own one.
    at.number_input(key="w_threshold_number").set_value(0.3).run()
    assert not at.exception
    moved = cr.compare_run_folders(runs["a"], runs["b"], "all", shared=0.3)
    assert at.dataframe[1].value.to_dict(orient="records") == cr.table_rows(moved, "shared")
    assert at.dataframe[0].value.to_dict(orient="records") == cr.table_rows(expected, "own")

    # The gallery's first patch opens in the inspector (run A).
    inspect = [b for b in at.button if b.key and b.key.startswith("compare_inspect_")]
    assert inspect  # the noisier run disagrees somewhere
    row = int(inspect[0].key.rsplit("_", 1)[1])
    inspect[0].click().run()
    assert not at.exception and at.session_state.patch == row
    assert any(h.value == "Patch inspector" for h in at.title)


def test_compare_page_says_why_another_cohort_cannot_be_compared(monkeypatch, runs):
    at = open_compare_page(monkeypatch, runs["a"].parent, run="a", split="all")
    at.selectbox(key="w_compare_b").set_value("other").run()
    assert not at.exception
    assert any("share no patch" in e.value and "different cohorts" in e.value for e in at.error)
    at.selectbox(key="w_compare_b").set_value("broken").run()
    assert not at.exception
    assert any("Run B (broken) cannot be opened" in e.value for e in at.error)
    # A split of one patient: no intervals, but the slide still shows where the runs disagree.
    at.selectbox(key="w_compare_b").set_value("b").run()
    at.radio(key="w_split").set_value("test").run()
    assert not at.exception
    assert any("needs at least 2" in w.value for w in at.warning)
    assert overlays.DISAGREEMENT in [t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]]
