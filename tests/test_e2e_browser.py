"""End to end in a real headless Chromium: the app served by `streamlit run` on the tiny run.

Threshold typed into the number box -> metrics change; a misclassified patch opened from the
errors gallery -> its Grad-CAM image loads; the reviewer signs in once and saves a review in run A;
a patch clicked on the slide opens in the inspector; a row of the per-patient table opens that
patient; run B of the same cohort lists the review. A screenshot of each step goes
to test-output/e2e/ (git-ignored) for a human look.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_browser import wait_idle  # the bench's own "page settled" (script done, nothing stale)
from pipeline import evaluate, metrics, store
from tests.apptest_helpers import CHROMIUM, browser_page, free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-output" / "e2e"
TIMEOUT_MS = 90_000  # the first Grad-CAM loads TensorFlow in the server
ROW_PX = 35  # height of a row (and of the header) in Streamlit's dataframe grid

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt install chromium)")


@pytest.fixture
def served_app(tmp_path, tiny_run):
    """`streamlit run app/main.py` on a free port against two copies of the tiny run (run-a, run-b: one
    cohort, so one review store); always stopped afterwards."""
    for name in ("run-a", "run-b"):
        shutil.copytree(tiny_run, tmp_path / "runs" / name, ignore=shutil.ignore_patterns(f"{store.REVIEWS}*"))
    port = free_port()
    env = {**os.environ, "IDC_RUNS": str(tmp_path / "runs")}
    env.pop("IDC_REVIEWERS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
         "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(f"http://localhost:{port}", server, timeout_s=60)
        yield f"http://localhost:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def metric_value(page, label: str):
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).locator('[data-testid="stMetricValue"]')


def open_page(page, title: str) -> None:
    """Switch page in the sidebar and wait until it has settled: the script done and no element of the
    page before left (a stale table there would take a click meant for this page's)."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).click()
    page.get_by_role("heading", name=title).wait_for(timeout=TIMEOUT_MS)
    wait_idle(page)


def threshold_that_changes_the_metrics(rows) -> float:
    """A threshold (4 decimals, as typed) at which the test split has errors and other metrics than at 0.5."""
    label, prob = rows["label"].to_numpy(), rows["prob"].to_numpy()
    at_default = metrics.metrics_at(label, prob, 0.5)
    for t in (round(float(rows["prob"].median()), 4), 0.3, 0.7):
        at = metrics.metrics_at(label, prob, t)
        if at["fp"] + at["fn"] and (at["sensitivity"], at["specificity"]) != (
                at_default["sensitivity"], at_default["specificity"]):
            return t
    raise AssertionError("the tiny run's test split has no threshold that changes its metrics")


def test_review_a_misclassified_patch_in_the_browser(served_app, tiny_run):
    playwright = pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    test_rows = store.load_run(tiny_run).table.query("split == 'test'")
    threshold = threshold_that_changes_the_metrics(test_rows)
    expected = {t: metrics.metrics_at(test_rows["label"], test_rows["prob"], t) for t in (0.5, threshold)}

    with playwright.sync_playwright() as p, browser_page(p, 1300, TIMEOUT_MS) as page:
        page.goto(f"{served_app}/?run=run-a")
        expect(page.get_by_text("SYNTHETIC cohort")).to_be_visible()
        sensitivity = metric_value(page, "Sensitivity (recall)")
        expect(sensitivity).to_have_text(f"{expected[0.5]['sensitivity']:.3f}")
        shot(page, "01_overview")

        box = page.get_by_label("Exact threshold (0 to 1)")
        box.fill(str(threshold))
        box.press("Enter")
        expect(sensitivity).to_have_text(f"{expected[threshold]['sensitivity']:.3f}")
        expect(metric_value(page, "Specificity")).to_have_text(f"{expected[threshold]['specificity']:.3f}")
        page.wait_for_url(f"**threshold={threshold}**")
        shot(page, "02_threshold_changed")

        open_page(page, "Errors & review queue")
        expect(page.get_by_text("most confident error first")).to_be_visible()
        shot(page, "03_errors_gallery")
        page.get_by_role("button", name="Inspect").first.click()
        page.get_by_role("heading", name="Patch inspector").wait_for()
        cam = page.locator('[data-testid="stImage"]').filter(has_text="Grad-CAM:").locator("img")
        expect(cam).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=cam.element_handle())
        assert page.get_by_text("false positive").or_(page.get_by_text("false negative")).count() > 0
        shot(page, "04_inspector_grad_cam")

        expect(page.get_by_role("button", name="Save review")).to_be_disabled()  # nobody signed in yet
        name = page.get_by_label("Your name (once per session)", exact=True)
        name.fill("E2E")
        name.press("Enter")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Reviewing as E2E")).to_be_visible()  # once per session, in the sidebar
        page.get_by_test_id("stForm").get_by_text("Label is wrong").click()  # the form, not the key buttons
        page.get_by_label("Note").fill("end-to-end check: stroma, not tumour")
        page.get_by_role("button", name="Save review").click()
        expect(page.get_by_text("Review saved: Label is wrong")).to_be_visible()
        expect(page.get_by_text("Signed in as E2E")).to_be_visible()  # kept for the next review
        expect(page.get_by_label("Note")).to_have_value("")
        shot(page, "05_review_saved")

        open_page(page, "Patient viewer")
        plot = page.locator(".js-plotly-plot").first
        expect(plot).to_be_visible()
        # Click the centre of the first patch of the shown patient, located through Plotly's own axes.
        target = page.evaluate("""gd => {
            const points = gd._fullData.find(t => t.name === 'patches');
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
            return {x: r.left + xa._offset + xa.l2p(points.x[0]), y: r.top + ya._offset + ya.l2p(points.y[0])};
        }""", plot.element_handle())
        page.mouse.move(target["x"], target["y"])
        page.mouse.click(target["x"], target["y"])
        opened = page.get_by_role("heading", name="Patch x")
        expect(opened).to_be_visible()
        page.wait_for_url("**patch=*")
        opened.scroll_into_view_if_needed()
        shot(page, "06_slide_click_opens_patch")

        # A row of the overview's per-patient table opens that patient in the viewer.
        open_page(page, "Cohort overview")
        last = evaluate.per_patient_table(test_rows, threshold)["patient_id"].iloc[-1]
        n_rows = test_rows["patient_id"].nunique()
        grid = page.locator('[data-testid="stDataFrame"]').last
        grid.scroll_into_view_if_needed()
        frame = grid.bounding_box()
        # The grid is a canvas: click the selection checkbox of the last row (35 px header and rows).
        page.mouse.click(frame["x"] + 16, frame["y"] + ROW_PX * (n_rows + 0.5))
        page.get_by_role("heading", name="Patient viewer").wait_for()
        page.wait_for_url(f"**patient={last}**")
        shot(page, "07_table_row_opens_patient")

        # The other run of the same cohort shows the review given in run A.
        page.goto(f"{served_app}/reviews?run=run-b")
        expect(page.get_by_text("1 reviews of 1 patches by 1 reviewer(s)")).to_be_visible()
        shot(page, "08_review_shown_in_the_other_run")
