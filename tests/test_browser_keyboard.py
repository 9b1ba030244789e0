"""Review by keys only in a real headless Chromium: the errors gallery's current patch, J to skip one,
then A, W and U; every verdict is in the cohort's SQLite store, on three distinct patches.

Reuses the served app of tests/test_e2e_browser.py (two copies of the tiny run, one cohort store).
A screenshot of the gallery after the three reviews goes to test-output/e2e/ (git-ignored).
"""
import re

import pytest

from app import selection
from pipeline import evaluate, reviews, store
from tests.apptest_helpers import CHROMIUM, browser_page
from tests.test_e2e_browser import served_app, shot  # noqa: F401  (served_app is a fixture)

TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt install chromium)")


def a_threshold_with_errors(rows, at_least: int = 5) -> float:
    """A threshold (4 decimals, as the URL carries it) at which the rows have at least ``at_least`` errors."""
    for t in (round(float(rows["prob"].median()), 4), 0.5, 0.3, 0.7):
        if len(selection.errors(rows, t)) >= at_least:
            return t
    raise AssertionError("the tiny run has too few errors at every tried threshold")


def test_three_patches_reviewed_by_keys_only(served_app, tiny_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    rows = evaluate.split_rows(store.load_run(tiny_run).table, "all")
    threshold = a_threshold_with_errors(rows)
    items = selection.errors(rows, threshold)
    n = len(items)

    with playwright.sync_playwright() as p, browser_page(p, 1200, TIMEOUT_MS) as page:
        page.goto(f"{served_app}/errors?run=run-a&split=all&threshold={threshold}")

        def current_is(k: int) -> None:
            expect(page.get_by_text(re.compile(rf"Current patch \({k} of {n:,}\)"))).to_be_visible()

        current_is(1)
        name = page.get_by_label("Your name (once per session)", exact=True)
        name.fill("Keyboard")
        name.press("Enter")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as Keyboard")).to_be_visible()
        page.get_by_role("heading", name="Errors & review queue").click()  # focus off the text box

        page.keyboard.press("j")  # skip the first patch
        current_is(2)
        for k, (key, text) in enumerate((("a", "Agree with label"), ("w", "Label is wrong"),
                                         ("u", "Unsure")), start=3):
            page.keyboard.press(key)
            expect(page.get_by_text(f"Review saved: {text}")).to_be_visible()
            current_is(k)  # a verdict by key moves on to the next patch
        shot(page, "keyboard_three_reviews")

    found = reviews.open_for_run(tmp_path / "runs" / "run-a").all().sort_values("id")
    assert found["verdict"].tolist() == ["agree", "label_wrong", "unsure"]
    assert (found["reviewer"] == "Keyboard").all() and (found["source"] == "app").all()
    expected = rows.loc[items.index[1:4], ["patient_id", "x", "y"]]  # the 2nd, 3rd and 4th patches in order
    got = found[["patient_id", "x", "y"]].astype({"x": int, "y": int})
    assert got.values.tolist() == expected.astype({"x": int, "y": int}).values.tolist()
    assert len({tuple(r) for r in got.values.tolist()}) == 3
