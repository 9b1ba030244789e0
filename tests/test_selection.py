"""Which patches the reviewer sees first (app.selection) and the overview's numbers (app.cohort)."""
import numpy as np
import pandas as pd
import pytest

from app import cohort, selection
from pipeline import metrics


@pytest.fixture
def rows():
    # index = patch row in the store; deliberately not 0..n-1, as a split's subset never is
    return pd.DataFrame({
        "patient_id": ["a", "a", "a", "b", "b", "b"],
        "label": [0, 0, 1, 1, 0, 1],
        "prob": [0.97, 0.56, 0.05, 0.45, 0.10, 0.90],
    }, index=[10, 11, 12, 13, 14, 15])


def test_outcome_codes_follow_the_confusion_convention(rows):
    names = selection.outcome_names(rows["label"], rows["prob"], 0.5)
    assert list(names) == ["FP", "FP", "FN", "FN", "TN", "TP"]
    counts = metrics.confusion_at(rows["label"], rows["prob"], 0.5)
    assert (names == "FP").sum() == counts["fp"] and (names == "FN").sum() == counts["fn"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        selection.outcome_codes(rows["label"], rows["prob"], 1.5)


def test_errors_most_confident_first_and_filtered_by_kind(rows):
    errors = selection.errors(rows, 0.5)
    assert list(errors.index) == [10, 12, 11, 13]  # |prob - label|: .97 .95 .56 .55
    assert list(errors["outcome"]) == ["FP", "FN", "FP", "FN"]
    assert list(selection.errors(rows, 0.5, kinds=["FN"]).index) == [12, 13]
    with pytest.raises(ValueError):
        selection.errors(rows, 0.5, kinds=["TP"])


def test_review_queue_uncertain_first_and_skips_reviewed(rows):
    queue = selection.review_queue(rows, 0.5, "uncertain")
    assert list(queue.index[:2]) == [13, 11]  # 0.45 and 0.56 are nearest 0.5
    assert queue["distance"].is_monotonic_increasing
    pending = selection.review_queue(rows, 0.5, "uncertain", reviewed_rows=[11])
    assert 11 not in pending.index and len(pending) == 5
    assert list(selection.review_queue(rows, 0.5, "confident_errors", reviewed_rows=[10]).index) == [12, 11, 13]


def test_paging_clamps_to_existing_pages():
    assert selection.n_pages(0, 24) == 1 and selection.n_pages(49, 24) == 3
    assert selection.page_bounds(49, 3, 24) == (48, 49)
    assert selection.page_bounds(49, 99, 24) == (48, 49)
    assert selection.page_bounds(49, 0, 24) == (0, 24)


def test_curves_and_metrics_table_carry_their_scope():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, 500)
    prob = np.clip(label * 0.4 + rng.random(500) * 0.6, 0, 1)
    curves = cohort.curves(label, prob)
    assert curves["roc_auc"] == pytest.approx(metrics.roc_auc(label, prob))
    assert curves["histogram"]["idc"].sum() + curves["histogram"]["non_idc"].sum() == 500
    at = metrics.metrics_at(label, prob, 0.4)
    point = cohort.operating_point(at)
    assert point["tpr"] == at["sensitivity"] and point["fpr"] == pytest.approx(1 - at["specificity"])
    described = {"n_patients": 3, "n_patches": 500, "n_positive": int(label.sum())}
    table = cohort.metrics_frame(at, curves, "test", described, "run-x")
    assert set(table[["split", "patients", "patches", "threshold"]].drop_duplicates().itertuples(index=False)) == {
        ("test", 3, 500, 0.4)}
    assert cohort.scope_text("test", described).startswith("the test split: 3 patients, 500 patches")


def test_curves_survive_a_split_with_one_class():
    curves = cohort.curves(np.zeros(10, int), np.linspace(0, 1, 10))
    assert np.isnan(curves["roc_auc"]) and curves["roc"] is None


def test_score_text_says_what_the_probability_is():
    assert "each patch alone" in cohort.score_text(None)
    with_context = cohort.score_text({"sigma_px": 200.0}, 0.9081)
    assert "σ = 200 px" in with_context and "the patch alone reaches ROC-AUC 0.908 here" in with_context
    # No patch-alone figure when it cannot be computed (a split with one class).
    assert "ROC-AUC" not in cohort.score_text({"sigma_px": 400.0}, float("nan"))


def test_model_text_says_which_model_and_how_it_was_trained():
    meta = {"arch": "separable", "seed": 2, "tta": True,
            "train": {"arch": "separable", "width": 48, "params": 97913, "best_epoch": 31, "epochs_run": 46,
                      "best_val_pr_auc": 0.8312, "train_seconds": 474.0, "n_train": 6101,
                      "train_patches_per_s": 655.2}}
    text = cohort.model_text(meta)
    for part in ("separable, width 48", "97,913 parameters", "best epoch 31 of 46", "PR-AUC 0.831",
                 "7.9 min on 6,101 patches", "655 patches/s", "seed 2", "dihedral"):
        assert part in text, part
    assert "width" not in cohort.model_text({"arch": "vgg16", "train": {**meta["train"], "width": None}})
    # A `pipeline score` run names where its model came from.
    assert "carried over" in cohort.model_text({"arch": "separable", "source_run": "/runs/a"})


def test_spread_over_patients_takes_turns_keeping_each_patients_order():
    import pandas as pd

    from app.selection import spread_over_patients

    queue = pd.DataFrame({"distance": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}, index=[10, 11, 12, 13, 14, 15])
    pids = ["a", "a", "a", "b", "c", "b"]
    out = spread_over_patients(queue, pids)
    assert out.index.tolist() == [10, 13, 14, 11, 15, 12]
    assert spread_over_patients(queue.iloc[:0], []).empty


def test_slide_progress_not_started_in_review_done_and_reopened():
    import pandas as pd

    from app.selection import progress_text, progress_when, slide_progress, unreviewed

    reviews = pd.DataFrame({"patient_id": ["a", "a", "b"], "row": [1, 1, 5], "reviewer": ["A", "B", "A"],
                            "created_at": ["2025-01-01T00:00", "2025-01-02T00:00", "2025-01-03T00:00"]})
    status = pd.DataFrame({"patient_id": ["b", "c"], "status": ["done", "reopened"], "reviewer": ["A", "B"],
                           "created_at": ["2025-01-04T00:00", "2025-01-05T00:00"]})
    out = slide_progress(["a", "b", "c", "d"], reviews, status)
    assert out["progress"].tolist() == ["in review", "done", "in review", "not started"]
    assert out.loc["a", "patches_reviewed"] == 1 and out.loc["a", "by"] == "A, B"
    assert out.loc["b", "by"] == "A" and out.loc["b", "when"] == "2025-01-04T00:00"
    assert progress_text(out.loc["b"]) == "done by A" and progress_text(out.loc["d"]) == "not started"
    # In review says by whom and when, as done does: the reviewers and the latest review...
    assert progress_text(out.loc["a"]) == "in review by A, B · 1 patch reviewed"
    assert progress_when(out.loc["a"]) == "2025-01-02 00:00 UTC" and progress_when(out.loc["b"]) == "2025-01-04 00:00 UTC"
    # ...or, reopened without a review since, whoever reopened it, when.
    assert progress_text(out.loc["c"]) == "in review by B · 0 patches reviewed"
    assert progress_when(out.loc["c"]) == "2025-01-05 00:00 UTC" and progress_when(out.loc["d"]) == ""
    assert unreviewed(["a", "b", "c", "d"], out) == ["a", "c", "d"]
    assert unreviewed(["a", "b", "c", "d"], out, keep="b") == ["a", "b", "c", "d"]
    empty = slide_progress(["a"], reviews.iloc[:0], status.iloc[:0])
    assert empty["progress"].tolist() == ["not started"]


def test_step_order_and_neighbours_for_the_review_keys(rows):
    rows = rows.assign(x=[1, 51, 1, 51, 101, 1], y=[1, 1, 51, 51, 51, 101])
    errors = selection.step_order(rows, 0.5, "errors")
    assert errors == list(selection.errors(rows, 0.5).index)  # most confident error first
    assert selection.step_order(rows, 0.5, "all") == [10, 11, 12, 13, 14, 15]  # top to bottom, left to right
    with pytest.raises(ValueError, match="step order"):
        selection.step_order(rows, 0.5, "random")
    assert selection.neighbours([10, 11, 12], 11) == (10, 12)
    assert selection.neighbours([10, 11, 12], 10) == (None, 11)
    assert selection.neighbours([10, 11, 12], 12) == (11, None)
    assert selection.neighbours([10, 11, 12], 99) == (None, 10)  # outside the order: J leads to its first
    assert selection.neighbours([], 99) == (None, None)


def test_focus_position_the_page_follows_the_current_card():
    assert selection.focus_position(50, 30, page=1, per_page=24) == (30, 2)  # J past a page's end turns it
    assert selection.focus_position(50, None, page=3, per_page=24) == (48, 3)  # page turned: its first card
    assert selection.focus_position(50, None, page=9, per_page=24) == (48, 3)  # a page that no longer exists
    assert selection.focus_position(50, 99, page=1, per_page=24) == (0, 1)
    assert selection.focus_position(0, None, page=1, per_page=24) == (0, 1)


def test_undefined_patient_rates_name_their_reason():
    assert selection.undefined_patient_rates(3, 10) == {}
    none = selection.undefined_patient_rates(0, 10)
    assert set(none) == {"sensitivity", "f1"} and set(none.values()) == {"no IDC patch in this patient"}
    assert selection.undefined_patient_rates(5, 0) == {"specificity": "no non-IDC patch in this patient"}
    assert selection.undefined_rates_text(none) == ["Sensitivity and F1 not defined: no IDC patch in this patient."]
    assert selection.undefined_rates_text({}) == []
