"""Agreement between reviewers, consensus labels and the reviews CSV import (pipeline/agreement.py)."""
import io
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from pipeline import agreement as ag
from pipeline.agreement import ConsensusRule

T0 = pd.Timestamp("2025-01-01T09:00:00", tz="UTC")


def reviews_frame(rows) -> pd.DataFrame:
    """Reviews from (patient_id, x, y, reviewer, verdict, minutes after T0) tuples; ids in list order."""
    df = pd.DataFrame(rows, columns=["patient_id", "x", "y", "reviewer", "verdict", "minutes"])
    df["created_at"] = [(T0 + pd.Timedelta(minutes=int(m))).isoformat(timespec="milliseconds") for m in df["minutes"]]
    df.insert(0, "id", np.arange(1, len(df) + 1))
    return df.drop(columns="minutes")


# --------------------------------------------------------------------------- contracts with app/
def test_constants_match_the_review_store_and_export():
    from pipeline import exports, reviews

    assert ag.CSV_COLUMNS == tuple(reviews.COLUMNS)
    assert ag.PATCH_KEY == reviews.PATCH_KEY
    assert ag.MAX_NOTE_CHARS == reviews.MAX_NOTE_CHARS
    assert ag.FORMULA_STARTS == exports.FORMULA_STARTS


# --------------------------------------------------------------------------- Cohen's kappa
@pytest.mark.parametrize("seed", range(40))
def test_cohen_kappa_equals_sklearn_exactly(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    k = int(rng.integers(1, 4))
    a = rng.choice(ag.VERDICTS[:k], n)
    # correlated second rater, sometimes with fewer categories, so kappa spans its range
    b = np.where(rng.random(n) < rng.random(), a, rng.choice(ag.VERDICTS[:max(1, k - seed % 2)], n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = cohen_kappa_score(a, b)
        got = ag.cohen_kappa(a, b)
    assert got == expected or (np.isnan(got) and np.isnan(expected))
    ints_a, ints_b = rng.integers(0, 5, n), rng.integers(0, 5, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, expected = ag.cohen_kappa(ints_a, ints_b), cohen_kappa_score(ints_a, ints_b)
    assert got == expected or (np.isnan(got) and np.isnan(expected))


def test_cohen_kappa_with_labels_equals_sklearn():
    rng = np.random.default_rng(3)
    a, b = rng.choice(ag.VERDICTS, 200), rng.choice(ag.VERDICTS, 200)
    for labels in (["agree", "label_wrong"], list(ag.VERDICTS), ["label_wrong", "agree", "unsure"]):
        assert ag.cohen_kappa(a, b, labels=labels) == cohen_kappa_score(a, b, labels=labels)


def test_cohen_kappa_degenerate_cases_mirror_sklearn():
    same = ["agree"] * 5
    # both raters used one and the same category: 0/0, nan with a warning, as scikit-learn
    with pytest.warns(ag.UndefinedAgreementWarning):
        assert np.isnan(ag.cohen_kappa(same, same))
    with pytest.warns(UserWarning):
        assert np.isnan(cohen_kappa_score(same, same))
    # each rater used one category, different ones: defined, 0
    assert ag.cohen_kappa(same, ["unsure"] * 5) == cohen_kappa_score(same, ["unsure"] * 5) == 0.0
    assert ag.cohen_kappa(["agree", "unsure"], ["agree", "unsure"]) == 1.0
    assert ag.cohen_kappa(["agree", "unsure"], ["unsure", "agree"]) == cohen_kappa_score(
        ["agree", "unsure"], ["unsure", "agree"]) == -1.0
    with pytest.raises(ValueError):
        ag.cohen_kappa([], [])
    with pytest.raises(ValueError):
        ag.cohen_kappa(["agree"], ["agree", "unsure"])


def test_pairwise_kappa_matches_sklearn_on_shared_patches():
    rng = np.random.default_rng(11)
    rows = []
    for reviewer in ("ann", "bob", "cy"):
        for i in rng.choice(60, 40, replace=False):
            rows.append(("1", 1 + 50 * int(i), 1, reviewer, str(rng.choice(ag.VERDICTS)), int(rng.integers(0, 99))))
    reviews = reviews_frame(rows)
    table = ag.pairwise_kappa(reviews)
    assert list(table[["reviewer_a", "reviewer_b"]].itertuples(index=False, name=None)) == [
        ("ann", "bob"), ("ann", "cy"), ("bob", "cy")]
    latest = ag.latest_per_reviewer(reviews).pivot(index=["patient_id", "x", "y"], columns="reviewer",
                                                   values="verdict")
    for r in table.itertuples():
        both = latest[[r.reviewer_a, r.reviewer_b]].dropna()
        assert r.n_patches == len(both)
        assert r.kappa == cohen_kappa_score(both[r.reviewer_a], both[r.reviewer_b])
        assert r.observed_agreement == pytest.approx((both[r.reviewer_a] == both[r.reviewer_b]).mean())


def test_pairwise_kappa_undefined_pair_is_nan_without_warning():
    reviews = reviews_frame([("1", 1, 1, "a", "agree", 0), ("1", 1, 1, "b", "agree", 1),
                             ("1", 51, 1, "a", "agree", 2), ("1", 51, 1, "b", "agree", 3),
                             ("1", 101, 1, "c", "unsure", 4)])  # c shares no patch with a or b
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = ag.pairwise_kappa(reviews)
    assert len(table) == 1 and table.loc[0, "n_patches"] == 2
    assert np.isnan(table.loc[0, "kappa"]) and table.loc[0, "observed_agreement"] == 1.0


# --------------------------------------------------------------------------- Fleiss' kappa
WIKIPEDIA_FLEISS = np.array([  # Fleiss' kappa article: 10 subjects, 14 raters, 5 categories
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


def test_fleiss_kappa_textbook_example():
    assert round(ag.fleiss_kappa(WIKIPEDIA_FLEISS), 3) == 0.210
    kappa, p_bar, p_e = ag._fleiss(WIKIPEDIA_FLEISS.astype(float))
    assert round(p_bar, 3) == 0.378 and round(p_e, 3) == 0.213


def test_fleiss_kappa_hand_computed():
    # two raters, fixed n: P-bar = 3/4, p = (3/8, 5/8), P_e = 34/64 -> kappa = 7/15
    assert ag.fleiss_kappa([[2, 0], [1, 1], [0, 2], [0, 2]]) == pytest.approx(7 / 15, abs=1e-15)
    # variable raters per item (3, 2, 2): P_i = 1, 0, 1; p = (4/7, 3/7); P_e = 25/49 -> kappa = 23/72
    assert ag.fleiss_kappa([[3, 0], [1, 1], [0, 2]]) == pytest.approx(23 / 72, abs=1e-15)


def test_fleiss_generalisation_equals_fixed_formula_for_fixed_n():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(2, 7))
        table = rng.multinomial(n, [0.5, 0.3, 0.2], size=int(rng.integers(2, 40)))
        # statsmodels' fleiss_kappa(method="fleiss"), written out
        p_cat = table.sum(0) / table.sum()
        p_rat = ((table * table).sum(1) - n) / (n * (n - 1.0))
        expected = (p_rat.mean() - (p_cat * p_cat).sum()) / (1 - (p_cat * p_cat).sum())
        assert ag.fleiss_kappa(table) == pytest.approx(expected, abs=1e-12)


def test_fleiss_degenerate_and_bad_tables():
    with pytest.warns(ag.UndefinedAgreementWarning):
        assert np.isnan(ag.fleiss_kappa([[3, 0], [2, 0]]))
    for bad in ([[1, 0], [2, 0]], [], [[1.5, 1]], [[-1, 3]]):
        with pytest.raises(ValueError):
            ag.fleiss_kappa(bad)


def test_fleiss_kappa_reviews_uses_multi_reviewed_patches_and_latest_verdicts():
    reviews = reviews_frame([
        ("1", 1, 1, "a", "label_wrong", 0), ("1", 1, 1, "a", "agree", 5),  # a's latest: agree
        ("1", 1, 1, "b", "agree", 1), ("1", 1, 1, "c", "agree", 1),
        ("1", 51, 1, "a", "label_wrong", 0), ("1", 51, 1, "b", "label_wrong", 0),
        ("1", 101, 1, "a", "unsure", 0),  # one reviewer only: not part of the agreement
    ])
    kappa, n = ag.fleiss_kappa_reviews(reviews)
    assert n == 2
    assert kappa == pytest.approx(ag.fleiss_kappa([[3, 0, 0], [0, 2, 0]]))
    none, n_none = ag.fleiss_kappa_reviews(reviews.iloc[:0])
    assert np.isnan(none) and n_none == 0


# --------------------------------------------------------------------------- opinions and tables
def test_latest_per_reviewer_keeps_each_reviewers_latest_only():
    reviews = reviews_frame([
        ("7", 1, 1, "ann", "agree", 10), ("7", 1, 1, "ann", "label_wrong", 20),
        ("7", 1, 1, " ann ", "unsure", 15),  # same reviewer after stripping, older than 20
        ("7", 1, 1, "bob", "unsure", 30), ("7", 1, 1, "bob", "agree", 30),  # same time: higher id wins
    ])
    latest = ag.latest_per_reviewer(reviews.sample(frac=1, random_state=1))  # input order does not matter
    assert latest[["reviewer", "verdict"]].values.tolist() == [["ann", "label_wrong"], ["bob", "agree"]]
    # a time without an offset is UTC; +01:00 is an hour earlier in UTC
    mixed = reviews_frame([("7", 1, 1, "c", "agree", 0), ("7", 1, 1, "c", "unsure", 0)])
    mixed.loc[0, "created_at"] = "2025-01-01T09:30:00"
    mixed.loc[1, "created_at"] = "2025-01-01T10:10:00+01:00"
    assert ag.latest_per_reviewer(mixed)["verdict"].tolist() == ["agree"]
    with pytest.raises(ValueError, match="unknown verdicts"):
        ag.latest_per_reviewer(reviews.assign(verdict="maybe"))
    with pytest.raises(ValueError, match="lack the columns"):
        ag.latest_per_reviewer(reviews.drop(columns="reviewer"))


def test_verdict_confusion_and_disagreement_queue():
    reviews = reviews_frame([
        ("1", 1, 1, "a", "agree", 0), ("1", 1, 1, "b", "label_wrong", 1),                # hard, even split
        ("1", 51, 1, "a", "agree", 0), ("1", 51, 1, "b", "unsure", 1),                   # soft
        ("1", 101, 1, "a", "agree", 0), ("1", 101, 1, "b", "agree", 1),                  # agreement
        ("2", 1, 51, "a", "label_wrong", 0), ("2", 1, 51, "b", "label_wrong", 1),
        ("2", 1, 51, "c", "agree", 2),                                                    # hard, 2 vs 1
        ("2", 51, 51, "a", "agree", 0), ("2", 51, 51, "b", "label_wrong", 1),
        ("2", 51, 51, "b", "agree", 9),                                                   # resolved by b
    ])
    conf = ag.verdict_confusion(reviews, "a", "b")
    assert list(conf.index) == list(conf.columns) == list(ag.VERDICTS)
    assert conf.loc["agree", "label_wrong"] == 1 and conf.loc["agree", "unsure"] == 1
    assert conf.loc["agree", "agree"] == 2 and conf.loc["label_wrong", "label_wrong"] == 1
    assert int(conf.values.sum()) == 5
    queue = ag.disagreements(reviews)
    assert list(zip(queue["patient_id"], queue["x"], queue["y"])) == [("1", 1, 1), ("2", 1, 51), ("1", 51, 1)]
    assert queue["conflict"].tolist() == ["label", "label", "unsure"]
    assert queue.loc[1, "verdicts"] == {"a": "label_wrong", "b": "label_wrong", "c": "agree"}
    assert queue.loc[1, "summary"] == "a: label_wrong; b: label_wrong; c: agree"
    assert (queue.loc[1, "agree"], queue.loc[1, "label_wrong"], queue.loc[1, "n_reviewers"]) == (1, 2, 3)
    assert ag.disagreements(reviews.iloc[4:6]).empty


def test_reviewer_vs_label():
    reviews = reviews_frame([
        ("1", 1, 1, "a", "agree", 0), ("1", 51, 1, "a", "label_wrong", 0), ("1", 101, 1, "a", "unsure", 0),
        ("1", 151, 1, "a", "agree", 0),  # not in the labels table
        ("1", 1, 1, "b", "label_wrong", 0), ("1", 1, 1, "b", "agree", 5),
    ])
    labels = pd.DataFrame({"patient_id": ["1"] * 3, "x": [1, 51, 101], "y": [1, 1, 1], "label": [1, 0, 1]})
    table = ag.reviewer_vs_label(reviews, labels).set_index("reviewer")
    a, b = table.loc["a"], table.loc["b"]
    assert (a["n"], a["agree"], a["label_wrong"], a["unsure"]) == (4, 2, 1, 1)
    assert a["agree_share"] == 0.5 and a["decided_agree_share"] == pytest.approx(2 / 3)
    assert (a["n_idc"], a["agree_share_idc"], a["n_non_idc"], a["agree_share_non_idc"]) == (2, 0.5, 1, 0.0)
    assert a["n_not_in_labels"] == 1
    assert (b["n"], b["agree_share"], b["n_idc"], b["n_non_idc"]) == (1, 1.0, 1, 0)
    assert np.isnan(b["agree_share_non_idc"])
    report = ag.agreement_report(reviews, labels)
    assert (report.n_reviews, report.n_reviewers, report.n_patches, report.n_patches_multi) == (6, 2, 4, 1)


# --------------------------------------------------------------------------- consensus
CASES = {  # patch x -> its reviews (reviewer, verdict, minute)
    1: [("a", "label_wrong", 0)],
    51: [("a", "label_wrong", 0), ("b", "agree", 0)],                           # tie 1-1
    101: [("a", "label_wrong", 0), ("b", "label_wrong", 0), ("c", "agree", 0)],  # 2-1
    151: [("a", "label_wrong", 0), ("b", "unsure", 0)],                          # unsure abstains
    201: [("a", "unsure", 0), ("b", "unsure", 0)],                               # all unsure
    251: [("a", "label_wrong", 0), ("a", "agree", 9)],                           # a changed their mind
    301: [("a", "label_wrong", 0), ("a", "label_wrong", 5)],                     # one opinion, not two
    351: [("a", "agree", 0), ("b", "agree", 0)],
    401: [],                                                                     # unreviewed
}
# rule -> x -> (consensus status, flipped, unsure)
EXPECTED = {
    ("any", 1): {1: ("flip", 1, 0), 51: ("flip", 1, 0), 101: ("flip", 1, 0), 151: ("flip", 1, 0),
                 201: ("all_unsure", 0, 1), 251: ("keep", 0, 0), 301: ("flip", 1, 0), 351: ("keep", 0, 0),
                 401: ("unreviewed", 0, 0)},
    ("majority", 1): {1: ("flip", 1, 0), 51: ("tie", 0, 1), 101: ("flip", 1, 0), 151: ("flip", 1, 0),
                      201: ("all_unsure", 0, 1), 251: ("keep", 0, 0), 301: ("flip", 1, 0), 351: ("keep", 0, 0),
                      401: ("unreviewed", 0, 0)},
    ("unanimous", 1): {1: ("flip", 1, 0), 51: ("split", 0, 1), 101: ("split", 0, 1), 151: ("flip", 1, 0),
                       201: ("all_unsure", 0, 1), 251: ("keep", 0, 0), 301: ("flip", 1, 0),
                       351: ("keep", 0, 0), 401: ("unreviewed", 0, 0)},
    ("majority", 2): {1: ("too_few", 0, 1), 51: ("tie", 0, 1), 101: ("flip", 1, 0), 151: ("too_few", 0, 1),
                      201: ("all_unsure", 0, 1), 251: ("too_few", 0, 0), 301: ("too_few", 0, 1),
                      351: ("keep", 0, 0), 401: ("unreviewed", 0, 0)},
}


@pytest.fixture
def consensus_case():
    rows = [("42", x, 1, r, v, m) for x, rs in CASES.items() for r, v, m in rs]
    reviews = reviews_frame(rows).sample(frac=1, random_state=0)  # order must not matter
    xs = list(CASES)
    # labels in another order and with a non-default index: matching must be by identity
    labels = pd.DataFrame({"patient_id": ["42"] * len(xs), "x": xs, "y": [1] * len(xs),
                           "label": [i % 2 for i in range(len(xs))]}, index=np.arange(100, 100 + len(xs)))
    labels = pd.concat([labels.iloc[::-1], pd.DataFrame({"patient_id": ["43"], "x": [1], "y": [1], "label": [1]},
                                                         index=[7])])
    return labels, reviews


@pytest.mark.parametrize("rule,min_reviewers", list(EXPECTED))
def test_consensus_rules_flip_labels_as_stated(consensus_case, rule, min_reviewers):
    labels, reviews = consensus_case
    result = ag.reviewed_labels(labels, reviews, ConsensusRule(rule, min_reviewers))
    table = result.table
    assert table.index.tolist() == labels.index.tolist()  # same rows, same order
    assert table.loc[7, "consensus"] == "unreviewed" and table.loc[7, "reviewed_label"] == 1
    mine = table[table["patient_id"] == "42"].set_index("x")
    given = labels[labels["patient_id"] == "42"].set_index("x")["label"]
    for x, (status, flipped, unsure) in EXPECTED[(rule, min_reviewers)].items():
        row, label = mine.loc[x], given.loc[x]
        assert (row["consensus"], bool(row["flipped"]), bool(row["unsure"])) == (status, bool(flipped), bool(unsure)), x
        assert row["reviewed_label"] == (1 - label if flipped else label)
    flips = table["flipped"]
    assert result.counts["n_flipped"] == int(flips.sum())
    assert result.counts["n_flipped_to_idc"] == int((flips & (table["label"] == 0)).sum())
    assert result.counts["n_flipped_to_non_idc"] == int((flips & (table["label"] == 1)).sum())
    assert result.counts["n_unsure"] == int(table["unsure"].sum())
    assert result.counts["n_training"] == int(result.training_mask.sum()) == len(table) - result.counts["n_unsure"]
    assert result.counts["n_reviewed"] == sum(1 for rs in CASES.values() if rs)
    assert result.counts["n_reviewed_not_in_labels"] == 0


def test_reviewed_labels_reports_reviews_of_unknown_patches_and_checks_labels(consensus_case):
    labels, reviews = consensus_case
    extra = reviews_frame([("99", 1, 1, "a", "label_wrong", 0)])
    result = ag.reviewed_labels(labels, pd.concat([reviews, extra]))
    assert result.counts["n_reviewed_not_in_labels"] == 1
    assert result.not_in_labels[["patient_id", "x", "y"]].values.tolist() == [["99", 1, 1]]
    with pytest.raises(ValueError, match="appear once"):
        ag.reviewed_labels(pd.concat([labels, labels.iloc[:1]]), reviews)
    with pytest.raises(ValueError, match="0 or 1"):
        ag.reviewed_labels(labels.assign(label=2), reviews)
    empty = ag.reviewed_labels(labels, reviews.iloc[:0])
    assert empty.counts["n_flipped"] == 0 and (empty.table["reviewed_label"] == empty.table["label"]).all()


def test_consensus_rule_describe_and_validation():
    assert ConsensusRule() == ConsensusRule("majority", 1)
    text = ConsensusRule("majority").describe()
    assert "more reviewers say the label is wrong than agree" in text and "'unsure' abstains" in text
    assert "as many reviewers agree as say the label is wrong" in text and "latest" in text
    assert "at least 3 reviewers" in ConsensusRule("unanimous", 3).describe()
    assert "disagree" in ConsensusRule("unanimous").describe()
    assert ConsensusRule.from_dict(ConsensusRule("any", 2).to_dict()) == ConsensusRule("any", 2)
    for bad in ({"rule": "most"}, {"min_reviewers": 0}, {"min_reviewers": True}, {"min_reviewers": 1.5}):
        with pytest.raises(ValueError):
            ConsensusRule(**bad)


# --------------------------------------------------------------------------- CSV import
def test_csv_import_round_trips_the_store_export(tmp_path):
    from pipeline.reviews import ReviewStore

    store = ReviewStore(tmp_path)
    notes = ["=HYPERLINK(\"http://x\")", "+1 mitoses", "-", "@here", "\tindented", "line one\r\nline two", "plain", ""]
    for i, note in enumerate(notes):
        store.add(row=i, patient_id="10253", x=1 + 50 * i, y=51, verdict=ag.VERDICTS[i % 3], note=note,
                  reviewer="-dr. who" if i == 2 else "alice")
    exported = store.to_csv_bytes()
    assert b"'=HYPERLINK" in exported  # the export neutralised it
    valid, problems = ag.read_reviews_csv(io.BytesIO(exported))
    assert problems == []
    original = store.all()
    pd.testing.assert_frame_equal(valid[["patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]],
                                  original[["patient_id", "x", "y", "verdict", "note", "reviewer", "created_at"]],
                                  check_dtype=False)
    assert valid["id"].tolist() == original["id"].tolist()
    # re-importing the same export adds nothing
    new, known = ag.drop_known_reviews(valid, original)
    assert new.empty and known == len(original)
    # row numbers as a spreadsheet shows them, although one note spans two lines of the file
    assert valid["source_row"].tolist() == list(range(2, 2 + len(notes)))


def test_csv_import_reports_every_bad_row_with_its_number_and_reason():
    header = "id,row,patient_id,x,y,verdict,note,reviewer,created_at,extra"
    good = "{id},0,10253,{x},1,agree,ok,alice,2025-01-01T09:00:00.000+00:00,"
    lines = [
        header,                                                                  # row 1
        good.format(id=1, x=1),                                                  # 2 ok
        "2,0,10253,51,1,maybe,,alice,2025-01-01T09:00:00+00:00,",                # 3 verdict
        "3,0,１０２５３,51,1,agree,,alice,2025-01-01T09:00:00+00:00,",            # 4 full-width digits
        "4,0,10253,x51,0,agree,,  ,not a time,",                                 # 5 x, y, reviewer, time
        "5,0,10253,51,1,agree",                                                  # 6 too few cells
        "",                                                                      # 7 blank: skipped
        '6,0,10253,101,1,unsure,"a note',                                        # 8 note spans 2 lines
        'over two lines",bob,2025-01-02T09:00:00Z,',
        good.format(id=1, x=1),                                                  # 9 duplicate of 2
        "seven,-3,10253,151,1,agree,,bob,2025-01-02T09:00:00Z,",                 # 10 id, row
        "8,0,10253,1.0,1,agree,,bob,2025-01-02T09:00:00Z,",                       # 11 x not whole
        "9,0,10253,201,1,agree,'=SUM(A1),'-bob,2025-01-02T09:00:00Z,",           # 12 ok: neutralised cells
        "10,,10253,251,1,agree," + "n" * (ag.MAX_NOTE_CHARS + 1) + ",bob,2025-01-02T09:00:00Z,",  # 13 note
    ]
    data = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")
    valid, problems = ag.read_reviews_csv(data)
    reasons = dict(problems)
    assert [n for n, _ in problems] == [1, 3, 4, 5, 6, 9, 10, 11, 13]
    assert "extra" in reasons[1]
    assert "verdict must be one of" in reasons[3]
    assert "patient_id" in reasons[4]
    assert all(s in reasons[5] for s in ("x must be", "y must be", "reviewer is empty", "created_at"))
    assert "cells" in reasons[6]
    assert "duplicate of row 2" in reasons[9]
    assert "id must be" in reasons[10] and "row must be" in reasons[10]
    assert "x must be" in reasons[11]
    assert "note is longer" in reasons[13]
    assert valid["source_row"].tolist() == [2, 8, 12]
    assert valid.loc[1, "note"] == "a note\r\nover two lines" or valid.loc[1, "note"] == "a note\nover two lines"
    neutralised = valid.loc[2]
    assert neutralised["note"] == "=SUM(A1)" and neutralised["reviewer"] == "-bob"
    assert len(valid) + sum(1 for n, _ in problems if n > 1) == 11  # every non-blank row is kept or reported
    assert valid["row"].isna().tolist() == [False, False, False]


def test_csv_import_takes_slide_patient_ids():
    """Reviews of whole-slide images (patient ids made by ingest-slides from file names) import back."""
    lines = ["patient_id,x,y,verdict,reviewer,created_at",
             "case_01,1,1,agree,alice,2025-01-01T09:00:00Z",          # 2 ok: a slide's id
             "TCGA-A1-0001,51,1,agree,alice,2025-01-01T09:00:00Z",    # 3 ok
             "case 01,1,1,agree,alice,2025-01-01T09:00:00Z",          # 4 a space: not an id ingest-slides makes
             "__,1,1,agree,alice,2025-01-01T09:00:00Z"]               # 5 nothing but underscores
    valid, problems = ag.read_reviews_csv(("\n".join(lines) + "\n").encode())
    assert valid["patient_id"].tolist() == ["case_01", "TCGA-A1-0001"]
    assert [n for n, _ in problems] == [4, 5] and all("patient_id" in r for _, r in problems)


def test_csv_import_file_level_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks the columns reviewer"):
        ag.read_reviews_csv(b"patient_id,x,y,verdict,created_at\n1,1,1,agree,2025-01-01T00:00:00Z\n")
    with pytest.raises(ValueError, match="empty"):
        ag.read_reviews_csv(b"")
    with pytest.raises(ValueError, match="UTF-8"):
        ag.read_reviews_csv(b"patient_id,x\n\xff\xfe\n")
    path = tmp_path / "r.csv"
    path.write_text("patient_id,x,y,verdict,reviewer,created_at\n1,1,1,agree,a,2025-01-01T00:00:00Z\n")
    valid, problems = ag.read_reviews_csv(path)
    assert problems == [] and valid["id"].isna().all() and valid["note"].tolist() == [""]
    valid2, _ = ag.read_reviews_csv(io.StringIO(path.read_text()))
    pd.testing.assert_frame_equal(valid, valid2)
    assert ag.latest_per_reviewer(valid)["verdict"].tolist() == ["agree"]  # imported rows feed the statistics


def test_unneutralise_inverts_the_export():
    from pipeline.exports import neutralise

    for text in ("=1+1", "+x", "-", "@a", "\tt", "\rr", "plain", "'quoted", "", "'", "-5"):
        assert ag.unneutralise(neutralise(text)) == text
    assert ag.unneutralise("'9") == "'9"  # only a quote before = + - @ tab CR is the export's
    assert ag.unneutralise("'=x") == "=x"  # the documented ambiguity: such a text cell loses its quote
