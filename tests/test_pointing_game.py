"""The explanation check (issue: Grad-CAM must point at tissue that matters): the pointing game itself on
maps whose hit rate is known by construction, and the report on a synthetic run, whose printed figures
must be the pointing game of the CAMs of the patches it chose."""
import re

import numpy as np
import pytest

from bench import report_pointing_game as report
from model.explain import METHODS, pointing_game
from pipeline import store


def test_pointing_game_hit_rate_of_constructed_maps():
    """20 maps with one peak each: 13 inside their patch's region, 7 outside -> 65%; chance = mean area share."""
    rng = np.random.default_rng(3)
    n, side = 20, 50
    masks = np.zeros((n, side, side), bool)
    cams = rng.random((n, side, side)) * 0.5  # background below every peak
    inside = np.zeros(n, bool)
    inside[rng.choice(n, 13, replace=False)] = True
    for i in range(n):
        r0, c0, h, w = rng.integers(0, 25), rng.integers(0, 25), rng.integers(5, 25), rng.integers(5, 25)
        masks[i, r0:r0 + h, c0:c0 + w] = True
        cells = np.argwhere(masks[i] == inside[i])  # a pixel inside the region, or one outside it
        r, c = cells[rng.integers(len(cells))]
        cams[i, r, c] = 1.0
    res = pointing_game(cams, masks)
    assert res["n"] == n and res["flat"] == 0
    assert res["hits"].tolist() == inside.tolist()
    assert res["hit_rate"] == pytest.approx(13 / 20)
    assert res["chance"] == pytest.approx(masks.mean())
    # the oracle (the mask itself as the map) always hits; its complement never does
    assert pointing_game(masks.astype(np.float32), masks)["hit_rate"] == 1.0
    assert pointing_game((~masks).astype(np.float32), masks)["hit_rate"] == 0.0


def test_pointing_game_report_prints_the_pointing_game_of_its_cams(tiny_run, capsys):
    import keras

    from model.explain import Explainer

    run = store.load_run(tiny_run)
    rows, masks = report.mixed_positive_patches(run, "all", max_patches=20)
    assert 0 < len(rows) <= 20
    assert (run.table.loc[rows, "label"] == 1).all()
    share = masks.mean(axis=(1, 2))
    assert ((share > 0.1) & (share < 0.9)).all()
    # the masks are the run's true regions under those patches
    np.testing.assert_array_equal(masks, store.patch_region_masks(run.path, run.table.loc[rows])[0])

    assert report.main(["--run", str(tiny_run), "--split", "all", "--max", "20"]) == 0
    out = capsys.readouterr().out
    assert f"{len(rows)} IDC-positive patches" in out
    printed = dict(re.findall(r"^  (\S+) +hit rate (.+?%) vs chance", out, flags=re.M))
    assert sorted(printed) == sorted(METHODS)

    explainer = Explainer(keras.models.load_model(tiny_run / store.MODEL), run.meta["cam_layer"])
    patches = np.asarray(run.patches[rows])
    assert len(patches) <= report.CAM_BATCH  # one call, as the report makes it
    for method in METHODS:
        expected = pointing_game(explainer.cam(patches, method, target=1), masks)
        line = next(line for line in out.splitlines() if line.startswith(f"  {method} "))
        assert printed[method] == f"{expected['hit_rate']:.1%}", line
        assert f"vs chance {expected['chance']:.1%} " in line
        assert f"({int(expected['hits'].sum())}/{len(rows)};" in line
