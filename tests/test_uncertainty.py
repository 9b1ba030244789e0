"""Patient-level bootstrap intervals and paired run comparisons (pipeline/uncertainty.py).

Exactness against explicit resampling and scikit-learn, coverage on simulated cohorts with a known
answer, exact zeros for a run compared with itself, DeLong against a brute-force kernel, and the
plain-words sentence. Every random draw is seeded; the whole file runs in a few seconds.
"""
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as sk

from pipeline import metrics, uncertainty as u


# --------------------------------------------------------------------------- helpers
def clustered_cohort(rng, n_patients, size_range=(10, 61)):
    """Patients with a random effect on their IDC share and another on their scores (ties: 2 decimals)."""
    sizes = rng.integers(*size_range, n_patients)
    pid = np.repeat(np.arange(n_patients), sizes)
    share = 1 / (1 + np.exp(-(-0.8 + 1.5 * rng.normal(size=n_patients))))
    y = (rng.random(pid.size) < share[pid]).astype(np.int8)
    z = -1.0 + 2.0 * y + rng.normal(size=n_patients)[pid] + rng.normal(size=pid.size)
    return pid, y, np.round(1 / (1 + np.exp(-z)), 2)


def resampled_index(boot, r):
    """Patch indices of resample r, each patient's patches copied as often as it was drawn."""
    return np.concatenate([np.flatnonzero(boot.codes == k).repeat(c) for k, c in enumerate(boot.weights[r])])


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(5)
    pid, y, p = clustered_cohort(rng, 15, (5, 40))
    return pid.astype(str), y, p


# --------------------------------------------------------------------------- exactness
def test_threshold_replicates_equal_metrics_at_on_resampled_patches(small):
    pid, y, p = small
    boot = u.PatientBootstrap(pid, y, p, n_boot=30, seed=1)
    for t in (0.0, 0.3, float(p[7]), 0.5, 0.81, 1.0):      # p[7]: a threshold equal to a score (ties at t)
        point, reps = boot.replicates_at(t)
        assert point == pytest.approx(metrics.metrics_at(y, p, t), nan_ok=True)
        for r in range(5):
            idx = resampled_index(boot, r)
            m = metrics.metrics_at(y[idx], p[idx], t)
            for name in u.THRESHOLD_METRICS:
                assert reps[name][r] == pytest.approx(m[name], abs=1e-12, nan_ok=True), (t, r, name)


def test_roc_and_pr_replicates_equal_sklearn_on_resampled_patches(small, monkeypatch):
    pid, y, p = small
    boot = u.PatientBootstrap(pid, y, p, n_boot=40, seed=2)
    roc, pr = boot.roc_auc_replicates(), boot.pr_auc_replicates()
    roc_cum, pr_cum = boot._curves_cumulative(roc=True)   # the route taken beyond PAIR_MATRIX_MAX_PATIENTS
    np.testing.assert_allclose(roc_cum, roc, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pr_cum, pr)
    for r in range(6):
        idx = resampled_index(boot, r)
        assert roc[r] == pytest.approx(sk.roc_auc_score(y[idx], p[idx]), abs=1e-12)
        assert pr[r] == pytest.approx(sk.average_precision_score(y[idx], p[idx]), abs=1e-12)
    monkeypatch.setattr(u, "PAIR_MATRIX_MAX_PATIENTS", 1)
    big_route = u.PatientBootstrap(pid, y, p, n_boot=40, seed=2)
    np.testing.assert_allclose(big_route.roc_auc_replicates(), roc, rtol=0, atol=1e-12)


def test_pair_matrix_equals_brute_force(small):
    pid, y, p = small
    boot = u.PatientBootstrap(pid, y, p, n_boot=5)
    P = boot.n_patients
    brute = np.zeros((P, P))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    kernel = 2 * (p[pos][:, None] > p[neg][None, :]) + (p[pos][:, None] == p[neg][None, :])
    np.add.at(brute, (boot.codes[pos][:, None], boot.codes[neg][None, :]), kernel)
    np.testing.assert_array_equal(boot.pair_matrix(), brute)


def test_curve_point_estimates_match_metrics(small):
    pid, y, p = small
    c = u.PatientBootstrap(pid, y, p, n_boot=50).curve_metrics()
    assert c["roc_auc"]["estimate"] == metrics.roc_auc(y, p)
    assert c["pr_auc"]["estimate"] == metrics.average_precision(y, p)
    assert c["roc_auc"]["low"] <= c["roc_auc"]["estimate"] <= c["roc_auc"]["high"]


def test_undefined_resamples_are_counted_not_hidden():
    # 12 patients, only two hold positives: many resamples have no positive patch at all
    rng = np.random.default_rng(3)
    pid = np.repeat(np.arange(12), 20)
    y = np.zeros(pid.size, int)
    y[(pid < 2) & (rng.random(pid.size) < 0.5)] = 1
    p = np.clip(0.4 * y + 0.6 * rng.random(pid.size), 0, 1)
    boot = u.PatientBootstrap(pid, y, p, n_boot=400, seed=0)
    no_pos = (boot.weights[:, :2].sum(axis=1) == 0).mean()
    assert 0.1 < no_pos < 0.5
    iv = boot.metrics_at(0.5)
    assert iv["sensitivity"]["undefined_share"] == pytest.approx(no_pos)
    assert iv["specificity"]["undefined_share"] == 0.0
    assert not np.isnan(iv["sensitivity"]["low"])          # interval over the defined resamples
    assert boot.curve_metrics()["roc_auc"]["undefined_share"] == pytest.approx(no_pos)


# --------------------------------------------------------------------------- coverage
@pytest.fixture(scope="module")
def population_truth():
    """Population values of the generating model, from 40,000 simulated patients (~1.4 M patches)."""
    _, y, p = clustered_cohort(np.random.default_rng(123), 40_000)
    m = metrics.metrics_at(y, p, 0.5)
    return {"sensitivity": m["sensitivity"], "specificity": m["specificity"], "f1": m["f1"],
            "balanced_accuracy": m["balanced_accuracy"], "roc_auc": metrics.roc_auc(y, p)}


def test_patient_bootstrap_intervals_cover_at_about_the_nominal_rate(population_truth):
    """200 cohorts of 80 patients: 95% intervals hold the population value 0.93-0.96 of the time here.

    (With 40 patients the percentile intervals are a little narrow: about 0.90-0.93, ROC-AUC 0.90.)
    """
    rng = np.random.default_rng(11)
    n_rep = 200
    hits = dict.fromkeys(population_truth, 0)
    for r in range(n_rep):
        pid, y, p = clustered_cohort(rng, 80)
        boot = u.PatientBootstrap(pid, y, p, n_boot=1000, seed=r)
        ivs = {**boot.metrics_at(0.5), **boot.curve_metrics(pr_auc=False)}
        for k, truth in population_truth.items():
            hits[k] += ivs[k]["low"] <= truth <= ivs[k]["high"]
    coverage = {k: v / n_rep for k, v in hits.items()}
    assert all(0.88 <= c <= 0.99 for c in coverage.values()), coverage


def test_patch_level_bootstrap_would_undercover(population_truth):
    """The negative control: resampling patches as if independent gives far too narrow intervals."""
    rng = np.random.default_rng(12)
    n_rep, hits = 40, 0
    for r in range(n_rep):
        _, y, p = clustered_cohort(rng, 60)
        iv = u.PatientBootstrap(np.arange(y.size), y, p, n_boot=200, seed=r).metrics_at(0.5)["sensitivity"]
        hits += iv["low"] <= population_truth["sensitivity"] <= iv["high"]
    assert hits / n_rep < 0.8


# --------------------------------------------------------------------------- paired comparison
def test_a_run_compared_with_itself_differs_by_exactly_zero(small):
    pid, y, p = small
    res = u.compare_runs(pid, y, p, p.copy(), 0.5, 0.5, shared_threshold=0.3, n_boot=300, seed=4)
    for curve in ("roc_auc", "pr_auc"):
        d = res[curve]["difference"]
        assert d["estimate"] == 0.0 and d["low"] == 0.0 and d["high"] == 0.0 and d["se"] == 0.0
    for where in ("own", "shared"):
        for name, d in res[where]["difference"].items():
            assert d["estimate"] == 0.0 and d["low"] == 0.0 and d["high"] == 0.0, (where, name)
        mc = res[where]["mcnemar"]
        assert mc["n_discordant"] == 0 and mc["p_exact"] == 1.0 and mc["p_corrected"] == 1.0
    for key in ("delong", "delong_clustered"):
        assert res["roc_auc"][key]["difference"] == 0.0 and res["roc_auc"][key]["p_value"] == 1.0
    sentence = u.compare_sentence(res, at="both")
    assert "better" not in sentence and "no detectable difference between A and B" in sentence


def test_paired_runs_share_one_resample_matrix(small):
    pid, y, p = small
    pair = u.PairedBootstrap(pid, y, p, np.sqrt(p), n_boot=100, seed=9)
    assert pair.a.weights is pair.b.weights
    alone = u.PatientBootstrap(pid, y, np.sqrt(p), n_boot=100, seed=9)
    np.testing.assert_array_equal(alone.weights, pair.a.weights)   # same cohort + seed: same resamples
    d = pair.at(0.5, 0.6)["difference"]["f1"]
    _, ra = pair.a.replicates_at(0.5)
    _, rb = pair.b.replicates_at(0.6)
    assert d == u.interval(d["estimate"], rb["f1"] - ra["f1"])


def test_a_better_run_is_detected(small):
    pid, y, p = small
    rng = np.random.default_rng(0)
    better = np.clip(p + 0.25 * (y - 0.5) * rng.random(p.size), 0, 1)   # pushes each class the right way
    res = u.compare_runs(pid, y, p, better, 0.5, 0.5, n_boot=500, names=("old", "new"))
    assert res["roc_auc"]["difference"]["low"] > 0
    assert res["roc_auc"]["delong_clustered"]["p_value"] < 0.05
    assert u.compare_sentence(res).startswith("At each run's own threshold (old 0.500, new 0.500), new is better "
                                              "than old on ROC-AUC (+")


COMPARED_LABELS = ("ROC-AUC", "F1", "sensitivity", "specificity", "balanced accuracy")


def _clauses(sentence, a="A", b="B"):
    """Which clause of the first sentence each compared metric is in: 'b' better, 'a' better, 'none', 'undefined'."""
    first = sentence.split(". ")[0]
    headers = {"b": f"{b} is better than {a} on", "a": f"{a} is better than {b} on", "none": "no detectable difference"}
    out = {k: [] for k in (*headers, "undefined")}
    for lab in COMPARED_LABELS:
        m = re.search(rf"(?<![a-z]){re.escape(lab)} \(", first)
        if m is None:
            assert lab in first.split(" could not be compared")[0].rsplit("; ", 1)[-1], lab
            out["undefined"].append(lab)
            continue
        before = first[:m.start()]
        out[max(headers, key=lambda k: before.rfind(headers[k]))].append(lab)
    return out


def test_sentence_says_better_only_where_the_interval_excludes_zero(small):
    pid, y, p = small
    res = u.compare_runs(pid, y, p, p, 0.5, 0.5, n_boot=50)
    def iv(est, lo, hi):
        return {"estimate": est, "low": lo, "high": hi, "se": 0.01, "undefined_share": 0.0}
    res["roc_auc"]["difference"] = iv(0.012, 0.004, 0.020)
    res["own"]["difference"].update(f1=iv(-0.003, -0.015, 0.009), sensitivity=iv(0.03, 0.0, 0.06),
                                    specificity=iv(-0.05, -0.08, -0.02),
                                    balanced_accuracy=iv(float("nan"), float("nan"), float("nan")))
    s = u.compare_sentence(res)
    assert s.startswith("At each run's own threshold (A 0.500, B 0.500), B is better than A on ROC-AUC "
                        "(+0.012, 95% CI +0.004 to +0.020); no detectable difference on F1 (-0.003, 95% CI "
                        "-0.015 to +0.009) and sensitivity (+0.030, 95% CI +0.000 to +0.060); A is better than "
                        "B on specificity (-0.050, 95% CI -0.080 to -0.020); balanced accuracy could not be compared")
    assert "McNemar" in s and "independent" in s       # the patch-level caveat is part of the sentence
    c = _clauses(s)
    assert c == {"b": ["ROC-AUC"], "a": ["specificity"], "none": ["F1", "sensitivity"],
                 "undefined": ["balanced accuracy"]}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sentence_agrees_with_intervals_on_real_comparisons(small, seed):
    pid, y, p = small
    rng = np.random.default_rng(seed)
    other = np.clip(p + rng.normal(0.1 * (seed - 1.5), 0.1, p.size) * (y - 0.3), 0, 1)
    res = u.compare_runs(pid, y, p, other, 0.5, 0.4 + 0.05 * seed, n_boot=200, seed=seed)
    c = _clauses(u.compare_sentence(res))
    diffs = {"ROC-AUC": res["roc_auc"]["difference"],
             **{u.LABELS[k]: res["own"]["difference"][k] for k in u.COMPARED_METRICS if k != "roc_auc"}}
    for label, d in diffs.items():
        assert (label in c["b"]) == (d["low"] > 0), (label, d)
        assert (label in c["a"]) == (d["high"] < 0), (label, d)
        assert (label in c["none"]) == (d["low"] <= 0 <= d["high"]), (label, d)


# --------------------------------------------------------------------------- DeLong and McNemar
def delong_brute(y, scores, groups=None):
    """O(n_pos * n_neg) DeLong from the explicit kernel; clustered by Obuchowski (1997) with loops."""
    y = np.asarray(y).astype(bool)
    X = np.atleast_2d(scores)
    pos, neg = X[:, y], X[:, ~y]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    m, n = pos.shape[1], neg.shape[1]
    aucs = psi.mean(axis=(1, 2))
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    if groups is None:
        return aucs, np.cov(v10) / m + np.cov(v01) / n
    g = np.asarray(groups)
    k = X.shape[0]
    s10, s01, s11 = np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k))
    ids = np.unique(g)
    gp, gn = g[y], g[~y]
    i10, i01 = len(np.unique(gp)), len(np.unique(gn))
    for c in ids:
        a10 = np.array([v10[r][gp == c].sum() - (gp == c).sum() * aucs[r] for r in range(k)])
        a01 = np.array([v01[r][gn == c].sum() - (gn == c).sum() * aucs[r] for r in range(k)])
        s10 += np.outer(a10, a10)
        s01 += np.outer(a01, a01)
        s11 += np.outer(a10, a01)
    s10 *= i10 / ((i10 - 1) * m)
    s01 *= i01 / ((i01 - 1) * n)
    s11 *= len(ids) / (len(ids) - 1)
    return aucs, s10 / m + s01 / n + (s11 + s11.T) / (m * n)


@pytest.mark.parametrize("clustered", [False, True])
def test_fast_delong_equals_brute_force(small, clustered):
    pid, y, p = small
    rng = np.random.default_rng(1)
    pb = np.round(np.clip(p + rng.normal(0, 0.1, p.size), 0, 1), 2)
    groups = pid if clustered else None
    aucs, cov = u.delong_covariance(y, np.vstack([p, pb]), groups)
    aucs_ref, cov_ref = delong_brute(y, np.vstack([p, pb]), groups)
    np.testing.assert_allclose(aucs, aucs_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-10, atol=1e-15)
    assert aucs[0] == pytest.approx(metrics.roc_auc(y, p), abs=1e-12)
    t = u.delong_test(y, p, pb, groups)
    var = cov_ref[0, 0] + cov_ref[1, 1] - 2 * cov_ref[0, 1]
    z = (aucs_ref[1] - aucs_ref[0]) / np.sqrt(var)
    assert t["z"] == pytest.approx(z, rel=1e-9)
    assert t["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_clustered_delong_with_one_patch_per_group_is_plain_delong(small):
    _, y, p = small
    pb = np.sqrt(p)
    _, c0 = u.delong_covariance(y, np.vstack([p, pb]))
    _, c1 = u.delong_covariance(y, np.vstack([p, pb]), groups=np.arange(y.size))
    np.testing.assert_allclose(c1, c0, rtol=1e-10)


def test_clustered_delong_agrees_with_the_patient_bootstrap():
    """On clustered data the clustered DeLong SE matches the patient bootstrap; the plain one is too small."""
    pid, y, p = clustered_cohort(np.random.default_rng(21), 80)
    rng = np.random.default_rng(22)
    pb = np.round(np.clip(p + rng.normal(0, 0.08, p.size) + 0.1 * rng.normal(size=80)[pid], 0, 1), 2)
    pair = u.PairedBootstrap(pid, y, p, pb, n_boot=2000, seed=0)
    se_boot = pair.curve_metrics(pr_auc=False)["roc_auc"]["difference"]["se"]
    se_clustered = u.delong_test(y, p, pb, groups=pid)["se"]
    se_plain = u.delong_test(y, p, pb)["se"]
    assert 0.8 < se_clustered / se_boot < 1.25
    assert se_plain < 0.7 * se_boot


def test_mcnemar_counts_and_p_values():
    y = np.array([1] * 12 + [0] * 8)
    pa = np.where(y == 1, 0.9, 0.1).astype(float)             # A: all correct
    pb = pa.copy()
    pb[:10] = 0.2                                              # B: misses 10 positives
    pb[12:14] = 0.8                                            # ... and 2 false positives
    pa[12:14] = 0.8                                            # A shares those two errors
    pa[14:16] = 0.7                                            # A alone: 2 false positives
    mc = u.mcnemar(y, pa, pb, 0.5, 0.5)
    assert (mc["only_a_correct"], mc["only_b_correct"], mc["n_discordant"]) == (10, 2, 12)
    assert mc["p_exact"] == pytest.approx(2 * stats.binom.cdf(2, 12, 0.5))
    assert mc["chi2_corrected"] == pytest.approx((8 - 1) ** 2 / 12)
    assert mc["p_corrected"] == pytest.approx(stats.chi2.sf(49 / 12, 1))


# --------------------------------------------------------------------------- API shape
def test_results_are_plain_json(small):
    pid, y, p = small
    boot = u.PatientBootstrap(pid, y, p, n_boot=50)
    summary = boot.summary({"default": 0.5, "f1_optimal": 0.41})
    assert set(summary["at"]["default"]) == {"threshold", *u.THRESHOLD_METRICS}
    assert summary["n_patients"] == 15 and summary["n_boot"] == 50 and summary["level"] == 0.95
    json.dumps(summary)
    json.dumps(u.compare_runs(pid, y, p, np.sqrt(p), 0.5, 0.4, n_boot=50))
    assert u.format_interval(summary["roc_auc"]).count("to") == 1
    assert u.format_interval({"estimate": float("nan")}) == "n/a"


def test_small_splits_get_a_reason_or_a_warning_not_a_crash(small):
    pid, y, p = small
    one = u.bootstrap_summary(np.full(5, "p1"), [0, 1, 0, 1, 1], np.linspace(0, 1, 5), {"default": 0.5})
    assert one["n_patients"] == 1 and "at least 2 patients" in one["unavailable"]
    json.dumps(one)
    assert "no patches" in u.bootstrap_summary([], [], [], {"default": 0.5})["unavailable"]
    with pytest.raises(ValueError, match="only 0 and 1"):       # bad data still raises
        u.bootstrap_summary(pid, np.full(y.size, 3), p, {"default": 0.5})
    few = u.bootstrap_summary(pid, y, p, {"default": 0.5}, n_boot=20)
    assert few["n_patients"] == 15 and "only 15 patients" in few["warnings"][0]
    assert "unavailable" not in few and few["at"]["default"]["threshold"] == 0.5


def test_from_rows_reads_a_scores_table(small):
    pid, y, p = small
    rows = pd.DataFrame({"patient_id": pid, "label": y, "prob": p, "prob_patch": np.sqrt(p)})
    a = u.PatientBootstrap.from_rows(rows, n_boot=30).metrics_at(0.5)
    assert a == u.PatientBootstrap(pid, y, p, n_boot=30).metrics_at(0.5)
    b = u.PatientBootstrap.from_rows(rows, prob="prob_patch", n_boot=30)
    np.testing.assert_array_equal(b.probs, np.sqrt(p))


def test_same_seed_same_intervals_other_seed_other_draw(small):
    pid, y, p = small
    a = u.PatientBootstrap(pid, y, p, n_boot=200, seed=3).metrics_at(0.5)
    b = u.PatientBootstrap(pid, y, p, n_boot=200, seed=3).metrics_at(0.5)
    c = u.PatientBootstrap(pid, y, p, n_boot=200, seed=4).metrics_at(0.5)
    assert a == b and a != c
    w = u.resample_weights(15, 200, 3)
    assert w.shape == (200, 15) and (w.sum(axis=1) == 15).all() and not w.flags.writeable


def test_align_runs_keeps_the_shared_patches_in_step():
    a = pd.DataFrame({"patient_id": ["p1", "p1", "p2", "p2"], "x": [1, 51, 1, 51], "y": [1, 1, 1, 1],
                      "label": [0, 1, 0, 1], "prob": [0.1, 0.9, 0.2, 0.8]})
    b = a.iloc[[3, 0, 2]].assign(prob=[0.7, 0.3, 0.4])      # another order, one patch not scored
    al = u.align_runs(a, b)
    assert al["n_shared"] == 3 and al["n_patches_a"] == 4
    order = np.argsort(al["probs_a"])
    assert al["probs_a"][order].tolist() == [0.1, 0.2, 0.8]
    assert al["probs_b"][order].tolist() == [0.3, 0.4, 0.7]
    with pytest.raises(ValueError, match="disagree on the label"):
        u.align_runs(a, b.assign(label=[0, 1, 1]))
    with pytest.raises(ValueError, match="share no patch"):
        u.align_runs(a, b.assign(x=[997, 998, 999]))
    with pytest.raises(ValueError, match="repeated patch key"):
        u.align_runs(a, b.assign(x=999))


@pytest.mark.parametrize("args, match", [
    ((["a", "a", "b"], [0, 1], [0.1, 0.2]), "lengths differ"),
    ((["a", "b"], [0, 1], [0.1, 0.2, 0.3]), "lengths differ"),
    ((["a", "b"], [0, 2], [0.1, 0.2]), "only 0 and 1"),
    ((["a", "b"], [0, 1], [0.1, float("nan")]), "NaN"),
    ((["a", "b"], [0, 1], [0.1, 1.5]), r"\[0, 1\]"),
    ((["a", "b"], [0, 1], [-0.1, 0.5]), r"\[0, 1\]"),
    ((["a", "a"], [0, 1], [0.1, 0.2]), "at least 2 patients"),
    (([], [], []), "no patches"),
    ((["a", None], [0, 1], [0.1, 0.2]), "missing"),
    ((["a", "b"], [0, 1], ["x", "y"]), "numeric"),
])
def test_bad_inputs_say_what_is_wrong(args, match):
    with pytest.raises(ValueError, match=match):
        u.PatientBootstrap(*args, n_boot=10)


def test_bad_options_say_what_is_wrong(small):
    pid, y, p = small
    with pytest.raises(ValueError, match="n_boot"):
        u.PatientBootstrap(pid, y, p, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        u.PatientBootstrap(pid, y, p, level=95)
    with pytest.raises(ValueError, match="threshold"):
        u.PatientBootstrap(pid, y, p, n_boot=10).metrics_at(1.5)
    with pytest.raises(ValueError, match="lengths differ: .* probs_b"):
        u.PairedBootstrap(pid, y, p, p[:-1], n_boot=10)
    with pytest.raises(ValueError, match="probs_b .*NaN"):
        u.PairedBootstrap(pid, y, p, np.full(p.size, np.nan), n_boot=10)
    with pytest.raises(ValueError, match="lengths differ"):
        u.mcnemar(y, p, p[:-1], 0.5, 0.5)
    with pytest.raises(ValueError, match="lengths differ"):
        u.delong_test(y, p, p, groups=pid[:-1])
    with pytest.raises(ValueError, match="NaN"):
        u.delong_test(y, p, np.where(y == 1, np.nan, p))
    with pytest.raises(ValueError, match="at must be"):
        u.compare_sentence(u.compare_runs(pid, y, p, p, 0.5, 0.5, n_boot=10), at="everywhere")
