"""How fast the dashboard feels in a real browser: headless Chromium driving ``python -m app``.

    .venv/bin/python -m bench.bench_browser                  # full dataset scale (built once, cached)
    .venv/bin/python -m bench.bench_browser --scale small    # a small run: usable in a few minutes
    .venv/bin/python -m bench.bench_browser --runs DIR       # the newest run under DIR, as the app opens it

Starts the app as a user does (``python -m app --server.port N --server.headless true`` with
$IDC_RUNS), drives Debian's Chromium through Playwright (never a downloaded browser) and prints the
median over ``--tries`` of each target, each measured from the user's action (a capturing
keydown / click listener in the page, ``performance.now``) to what the user waits for, seen by a
MutationObserver in the page:

- threshold change (number box, slider, preset button): the F1 tile shows the new value, and the
  page is settled (Streamlit's script state back to notRunning and no stale element left);
- baseline in the same run: a rerun that changes nothing (Streamlit's "R" shortcut, a full run of
  the script with the same state), so the figures can be read against this machine's load;
- page switch (overview <-> errors & review queue), the patient viewer on a 2,400-patch slide with
  two overlays, Grad-CAM of a newly chosen patch (model warm), the overview's first render after
  the server starts;
- resident memory (RSS) of the server's process tree with 1 and with 5 browser sessions open.

The full-scale run (279 patients, 277,524 patches, the three largest slides 2,400 patches, as the
public dataset) is built once under ``--cache`` (default ~/.cache/idc-bench): the synthetic
generator renders the slides at the real dataset's slide sizes, then ``pipeline run`` ingests,
splits, trains the default CNN for a 60 s budget (one epoch at most: only timing is measured here,
never model quality), scores every patch with calibration and neighbourhood context and evaluates.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.common import N_PATIENTS, ROOT, patient_sizes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEFAULT_CACHE = Path.home() / ".cache" / "idc-bench"
TIMEOUT_MS = 90_000
TARGETS_MS = {
    "threshold -> F1 tile": 250, "threshold -> settled": 600, "page switch": 1000,
    "patient viewer, largest slide, 2 overlays": 1500, "Grad-CAM of a new patch": 1000,
    "overview first render after server start": 5000,
}
RSS_TARGET_MB = 3000


# --------------------------------------------------------------------------- the full-scale run
def full_scale_run(cache: Path, rebuild: bool = False) -> Path:
    """The full-scale runs folder (built on first use, then reused): cache/full/runs/full-scale."""
    runs = cache / "full" / "runs"
    run = runs / "full-scale"
    if (run / "evaluation.json").exists() and not rebuild:
        return runs
    from model.config import TrainConfig
    from pipeline.run import run_pipeline
    from pipeline.synth import cohort as synth_cohort

    data = cache / "full" / "cohort"
    t0 = time.perf_counter()
    if not (data / "SYNTHETIC_COHORT.json").exists() or rebuild:
        plan = synth_cohort._plan_cohort

        def full_plan(out_dir, n_patients, seed):  # the generator's plan at the real dataset's slide sizes
            sizes = patient_sizes(np.random.default_rng(seed))
            return [dataclasses.replace(p, n_target=int(s)) for p, s in zip(plan(out_dir, n_patients, seed), sizes)]

        synth_cohort._plan_cohort = full_plan
        try:
            meta = synth_cohort.generate_cohort(data, n_patients=N_PATIENTS, seed=0)
        finally:
            synth_cohort._plan_cohort = plan
        print(f"full-scale cohort: {meta['n_patients']} patients, {meta['n_patches']:,} patches rendered in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    t1 = time.perf_counter()
    # Timing only: a 60 s training budget is enough for a model that scores and explains like the default.
    run_pipeline(data, run, TrainConfig(epochs=1, patience=0, time_budget_s=60), force=rebuild)
    print(f"full-scale run: pipeline (ingest, split, train, score, evaluate) in {time.perf_counter() - t1:.0f} s; "
          f"{time.perf_counter() - t0:.0f} s in all", flush=True)
    return runs


def small_runs(cache: Path) -> Path:
    """A runs folder with a small run: ./runs when it has one, else one built once under cache/small."""
    from pipeline import store
    from pipeline.names import RUNS_DIR

    if store.list_runs(ROOT / RUNS_DIR):
        return ROOT / RUNS_DIR
    runs = cache / "small" / "runs"
    if not store.list_runs(runs):
        from model.config import TrainConfig
        from pipeline.run import run_pipeline
        from pipeline.synth import generate_cohort

        data = cache / "small" / "cohort"
        generate_cohort(data, n_patients=12, seed=0)  # 2 test patients at least
        run_pipeline(data, runs / "small-synthetic", TrainConfig(epochs=1, patience=0, time_budget_s=30))
    return runs


# --------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class Server:
    """``python -m app`` on a free port against ``runs``; stopped by :meth:`stop` (or as a context)."""

    def __init__(self, runs: Path, log: Path):
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        env = {**os.environ, "IDC_RUNS": str(runs)}
        env.pop("IDC_REVIEWERS", None)
        self.log = log.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "--server.port", str(self.port),
                                      "--server.headless", "true"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the app did not start: see {log}")
            time.sleep(0.1)
        self.healthy_s = time.perf_counter() - self.started

    def rss_mb(self) -> float:
        """Resident memory of the server and every process under it, in MB (psutil if installed, else /proc)."""
        try:
            import psutil
        except ImportError:
            psutil = None
        if psutil is not None:
            proc = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1e6
        total, todo = 0, [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, StopIteration):
                continue
        return total * 1024 / 1e6

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------- in the page
# A watcher installed in every page: arm() records the time of the next user action (capturing keydown /
# pointerdown listeners, performance.now) and then, at every DOM change, image load and animation frame,
# the first time each condition holds; "settled" is Streamlit's own state: the script not running, no
# running indicator, no stale element left, after the action.
WATCHER_JS = r"""
(() => {
  if (window.__bench) return;
  const app = () => document.querySelector('[data-testid="stApp"]');
  const running = () => { const a = app(); return !a || a.getAttribute('data-test-script-state') === 'running'; };
  const idle = () => !running() && !document.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"]')
                && !document.querySelector('[data-stale="true"]');
  const B = window.__bench = {
    helpers: {
      tile(label) {
        for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
          const l = m.querySelector('[data-testid="stMetricLabel"]');
          if (l && l.innerText.trim() === label) { const v = m.querySelector('[data-testid="stMetricValue"]'); return v ? v.innerText.trim() : null; }
        }
        return null;
      },
      heading(text) { return [...document.querySelectorAll('h1')].some(h => h.innerText.includes(text)); },
      plot() {
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
          const d = gd._fullData; if (!d) continue;
          const patches = d.find(t => t.name === 'patches');
          // the slide itself: a layout image (a served JPEG) or an image trace (a data URI), drawn
          const slide = d.some(t => t.type === 'image') || [...gd.querySelectorAll('.layer-below image, .imagelayer image')].some(i => i.getAttribute('href'));
          if (patches && slide) return {n: patches.x.length, heatmaps: d.filter(t => t.type === 'heatmap').length, gd};
        }
        return null;
      },
      camSrc() {
        for (const im of document.querySelectorAll('[data-testid="stImage"]')) {
          if (!im.innerText.includes('Grad-CAM:')) continue;
          const img = im.querySelector('img');
          if (img && img.complete && img.naturalWidth > 0) return img.currentSrc || img.src;
        }
        return null;
      },
    },
    state: null,
    arm(conds) {
      const s = this.state = {t0: null, times: {}, sawRunning: false, lastChange: null,
                              conds: Object.fromEntries(Object.entries(conds).map(([k, v]) => [k, new Function('h', 'return (' + v + ');')]))};
      const start = () => { if (s.t0 === null) { s.t0 = performance.now(); B.check(); } };
      for (const type of ['keydown', 'pointerdown', 'mousedown']) document.addEventListener(type, start, {capture: true, once: true});
    },
    check() {
      const s = this.state;
      if (!s || s.t0 === null) return;
      const now = performance.now();
      if (running()) s.sawRunning = true;
      for (const [name, fn] of Object.entries(s.conds)) {
        if (s.times[name] !== undefined) continue;
        let ok = false;
        try { ok = !!fn(this.helpers); } catch (e) { ok = false; }
        if (ok) s.times[name] = now - s.t0;
      }
      if (s.times.settled === undefined && s.sawRunning && idle()
          && Object.keys(s.conds).every(k => s.times[k] !== undefined)) s.times.settled = now - s.t0;
    },
    done() { const s = this.state; return !!s && s.t0 !== null && s.times.settled !== undefined; },
  };
  const start = () => {
    new MutationObserver(() => { if (B.state && B.state.t0 !== null) B.state.lastChange = performance.now() - B.state.t0; B.check(); })
      .observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
    document.addEventListener('load', () => B.check(), true);
    const frame = () => { B.check(); requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
    setInterval(() => B.check(), 10);  // frames are throttled in a background tab
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
"""


def timed(page, conds: dict[str, str], action, quiet_ms: int = 300) -> dict[str, float]:
    """Arm the watcher with ``conds`` (JS expressions over the helpers ``h``), run ``action`` (a user action:
    key press or click), wait until every condition held and the page settled; times in ms from the action."""
    page.evaluate("conds => window.__bench.arm(conds)", conds)
    action()
    page.wait_for_function("() => window.__bench.done()", timeout=TIMEOUT_MS, polling=20)
    page.wait_for_timeout(quiet_ms)  # what still changes after the script finished (charts drawn late)
    state = page.evaluate("() => ({times: window.__bench.state.times, last: window.__bench.state.lastChange})")
    return {**state["times"], "last DOM change": state["last"] or 0.0}


def js_string(text: str) -> str:
    return json.dumps(text)


def wait_idle(page) -> None:
    """Until the script is not running and nothing is stale (after a navigation, before arming)."""
    page.wait_for_function("""() => { const a = document.querySelector('[data-testid="stApp"]');
        return a && a.getAttribute('data-test-script-state') === 'notRunning' && !document.querySelector('[data-stale="true"]'); }""",
                           timeout=TIMEOUT_MS, polling=50)
    page.wait_for_timeout(200)


# --------------------------------------------------------------------------- the scenarios
F1_TILE = "h.tile('F1')"


def f1_text(run, split: str, threshold: float) -> str:
    from pipeline import evaluate, metrics

    rows = evaluate.split_rows(run.table, split)
    return f"{metrics.metrics_at(rows['label'].to_numpy(), rows['prob'].to_numpy(), threshold)['f1']:.3f}"


def distinct_thresholds(run, split: str, n: int) -> list[tuple[float, str]]:
    """``n`` thresholds (4 decimals) whose F1 tile text differs from the one before, with that text."""
    from pipeline import evaluate

    prob = evaluate.split_rows(run.table, split)["prob"].to_numpy()
    out, last = [], f1_text(run, split, 0.5)
    for t in np.round(np.quantile(prob, np.random.default_rng(1).uniform(0.1, 0.9, 20 * n)), 4):
        text = f1_text(run, split, float(t))
        if text != last and text != "nan":
            out.append((float(t), text))
            last = text
        if len(out) == n:
            break
    return out


def new_page(browser, url: str, viewport=(1500, 1300)):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.add_init_script(WATCHER_JS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def open_overview(page, url: str) -> float:
    """Load the app in a new tab; ms until the overview's F1 tile is shown and the page has settled."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(f"() => {F1_TILE.replace('h.', 'window.__bench.helpers.')} !== null", timeout=TIMEOUT_MS,
                           polling=20)
    wait_idle(page)
    return (time.perf_counter() - t0) * 1000 - 200  # wait_idle's final 200 ms


def threshold_by_number(page, tries: list[tuple[float, str]]) -> list[dict]:
    box = page.get_by_label("Exact threshold (0 to 1)")
    out = []
    for value, f1 in tries:
        box.fill(str(value))
        out.append(timed(page, {"tile": f"{F1_TILE} === {js_string(f1)}"}, lambda: box.press("Enter")))
    return out


def baseline_reruns(page, n: int) -> list[dict]:
    """A rerun that changes nothing: Streamlit's "R" shortcut with the focus on the page, not in a widget."""
    out = []
    for _ in range(n):
        page.locator("h1").first.click()
        out.append(timed(page, {}, lambda: page.keyboard.press("r")))
    return out


def threshold_by_slider(page, run, split: str, n: int) -> list[dict]:
    """The slider moved by keyboard (PageUp / PageDown: +-0.1) between two thresholds with different F1."""
    from pipeline import evaluate

    prob = evaluate.split_rows(run.table, split)["prob"].to_numpy()
    for v0 in np.round(np.clip(np.quantile(prob, np.linspace(0.1, 0.9, 33)), 0, 0.9), 3):
        low, high = f1_text(run, split, float(v0)), f1_text(run, split, float(v0) + 0.1)
        if low != high and "nan" not in (low, high):
            break
    else:
        print("  (slider skipped: no pair of thresholds 0.1 apart with a different F1)")
        return []
    box = page.get_by_label("Exact threshold (0 to 1)")
    box.fill(str(float(v0)))
    timed(page, {"tile": f"{F1_TILE} === {js_string(low)}"}, lambda: box.press("Enter"))
    thumb = page.locator('[data-testid="stSidebar"] [data-testid="stSlider"] input[type="range"]').first
    out = []
    for i in range(n):
        key, text = ("PageUp", high) if i % 2 == 0 else ("PageDown", low)
        thumb.focus()
        out.append(timed(page, {"tile": f"{F1_TILE} === {js_string(text)}"}, lambda: page.keyboard.press(key)))
    return out


def threshold_by_preset(page, run, split: str, n: int) -> list[dict]:
    """Clicks on the preset buttons in turn (only presets whose F1 differs from the previous one's)."""
    presets = [(name, float(v)) for name, v in run.thresholds.items()]
    order, last = [], None
    for name, value in presets * n:
        text = f1_text(run, split, value)
        if text != last:
            order.append((name, text))
            last = text
    out = []
    for name, text in order[1:n + 1]:
        button = page.locator(f".st-key-preset_{name} button[data-testid^=stBaseButton]").first
        out.append(timed(page, {"tile": f"{F1_TILE} === {js_string(text)}"}, lambda: button.click()))
    return out


def nav(page, title: str):
    return page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title)


def page_switches(page, n: int) -> list[dict]:
    """Overview -> Errors & review queue -> overview ...; each switch until the new page has settled."""
    out = []
    for _ in range(n):
        out.append(timed(page, {"page": "h.heading('Errors & review queue')"},
                         lambda: nav(page, "Errors & review queue").click()))
        out.append(timed(page, {"page": "h.heading('Cohort overview')", "tile": f"{F1_TILE} !== null"},
                         lambda: nav(page, "Cohort overview").click()))
    return out


def choose(page, key: str, text: str) -> None:
    """Type ``text`` into the selectbox with widget key ``key`` (filters its options); Enter picks the first."""
    box = page.locator(f".st-key-{key} input")
    box.click()
    box.fill(text)
    page.wait_for_timeout(150)


def patient_viewer(page, big: list[tuple[str, int]], n: int) -> dict[str, list[dict]]:
    """Open the viewer on a 2,400-patch slide, add a second overlay, then move between the largest slides."""
    out: dict[str, list[dict]] = {}
    pid, size = big[0]
    plot = f"(p => p && p.n === {size} && p.heatmaps === %d)(h.plot())"
    out["open (page switch; slide rebuilt, first time)"] = [
        timed(page, {"plot": plot % 1, "page": "h.heading('Patient viewer')"}, lambda: nav(page, "Patient viewer").click())]
    pill = page.locator('[data-testid="stPills"] button, [data-testid="stButtonGroup"] button').filter(has_text="Probability").first
    out["add a second overlay (Probability)"] = [timed(page, {"plot": plot % 2}, lambda: pill.click())]
    cold, warm = [], []
    for i in range(n + len(big) - 1):
        pid, size = big[(i + 1) % len(big)]
        choose(page, "w_patient", pid)
        cond = {"plot": f"(p => p && p.n === {size} && p.heatmaps === 2)(h.plot())",
                "caption": f"document.body.innerText.includes('patient {pid} (')"}
        (cold if i < len(big) - 1 else warm).append(timed(page, cond, lambda: page.keyboard.press("Enter")))
    out["another of the 3 largest slides, 2 overlays (first time: rebuilt)"] = cold
    out["another of the 3 largest slides, 2 overlays (seen before)"] = warm
    return out


def grad_cam(page, n: int) -> dict[str, list[dict]]:
    """The Patch inspector; then the next patch in its picker, n times: until its Grad-CAM image has loaded."""
    first = timed(page, {"page": "h.heading('Patch inspector')", "cam": "h.camSrc() !== null"},
                  lambda: nav(page, "Patch inspector").click())
    out = []
    for _ in range(n):
        before = page.evaluate("() => window.__bench.helpers.camSrc()")
        box = page.locator(".st-key-w_patch input")
        box.click()
        page.wait_for_timeout(150)
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(100)
        out.append(timed(page, {"cam": f"(s => s !== null && s !== {js_string(before)})(h.camSrc())"},
                         lambda: page.keyboard.press("Enter")))
    return {"inspector opened (first Grad-CAM: loads the model)": [first], "next patch's Grad-CAM (model warm)": out}


# --------------------------------------------------------------------------- the run
def median(samples: list[dict], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def extra_session(browser, url: str, run, split: str, big: list[tuple[str, int]]) -> object:
    """What one more reviewer does: overview, a threshold change, the viewer on a large slide, the inspector."""
    page = new_page(browser, f"{url}/?patient={big[0][0]}")
    open_overview(page, f"{url}/?patient={big[0][0]}")
    threshold_by_number(page, distinct_thresholds(run, split, 1))
    timed(page, {"page": "h.heading('Patient viewer')", "plot": "h.plot() !== null"},
          lambda: nav(page, "Patient viewer").click())
    timed(page, {"page": "h.heading('Patch inspector')", "cam": "h.camSrc() !== null"},
          lambda: nav(page, "Patch inspector").click())
    return page


def measure(runs: Path, tries: int, log: Path, split: str = "test") -> dict:
    from playwright.sync_api import sync_playwright

    from pipeline import store

    newest = store.list_runs(runs)[0]
    run = store.load_run(newest)
    sizes = run.table.groupby("patient_id").size().sort_values(ascending=False, kind="stable")
    big = [(str(p), int(n)) for p, n in sizes.iloc[:3].items()]
    thresholds = distinct_thresholds(run, split, tries)
    scale = {"run": newest.name, "patients": int(run.table["patient_id"].nunique()), "patches": len(run.table),
             "largest slides": [n for _, n in big], "split": split,
             "split patches": int((run.table["split"] == split).sum()) if split != "all" else len(run.table)}
    print(f"machine: {os.cpu_count()} CPU cores, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(other jobs share them: read every figure against the baseline rerun measured in the same run)")
    print(f"run {newest.name}: {scale['patients']} patients, {scale['patches']:,} patches "
          f"({split} split: {scale['split patches']:,}); largest slides {', '.join(f'{p} ({n:,})' for p, n in big)}",
          flush=True)
    results: dict[str, object] = {"scale": scale}
    timings: dict[str, list[dict]] = {}
    with Server(runs, log) as server, sync_playwright() as p:
        results["server healthy (s)"] = server.healthy_s
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            url = server.url
            query = f"/?patient={big[0][0]}" + (f"&split={split}" if split != "test" else "")
            page = new_page(browser, url)
            timings["overview first render after server start"] = [{"settled": open_overview(page, url + query)}]
            print("  overview open", flush=True)
            warm_page = new_page(browser, url)
            timings["overview, a new session (server warm)"] = [{"settled": open_overview(warm_page, url + query)}]
            warm_page.context.close()
            timings["baseline: rerun changing nothing (R)"] = baseline_reruns(page, tries)
            timings["threshold: number box"] = threshold_by_number(page, thresholds)
            timings["threshold: slider"] = threshold_by_slider(page, run, split, tries)
            timings["threshold: preset button"] = threshold_by_preset(page, run, split, tries)
            timings["baseline, again: rerun changing nothing (R)"] = baseline_reruns(page, tries)
            print("  threshold changes", flush=True)
            timings["page switch (overview <-> errors)"] = page_switches(page, max(2, tries // 2))
            print("  page switches", flush=True)
            nav(page, "Cohort overview").click()
            wait_idle(page)
            timings.update({f"patient viewer: {k}": v for k, v in patient_viewer(page, big, tries).items()})
            print("  patient viewer", flush=True)
            timings.update({f"Grad-CAM: {k}": v for k, v in grad_cam(page, tries).items()})
            print("  Grad-CAM", flush=True)
            page.wait_for_timeout(1000)
            rss = {"1 session": server.rss_mb()}
            pages = [page]
            for i in range(4):
                pages.append(extra_session(browser, url, run, split, big))
                if i == 0:
                    rss["2 sessions"] = server.rss_mb()
            page.wait_for_timeout(1000)
            rss["5 sessions"] = server.rss_mb()
            results["rss_mb"] = rss
            results["load average after"] = os.getloadavg()
            print("  sessions", flush=True)
        finally:
            browser.close()
    results["timings"] = timings
    return results


SUMMARY = [  # (target, timing, measure)
    ("threshold -> F1 tile", "threshold: number box", "tile"),
    ("threshold -> F1 tile", "threshold: slider", "tile"),
    ("threshold -> F1 tile", "threshold: preset button", "tile"),
    ("threshold -> settled", "threshold: number box", "settled"),
    ("threshold -> settled", "threshold: slider", "settled"),
    ("threshold -> settled", "threshold: preset button", "settled"),
    ("", "baseline: rerun changing nothing (R)", "settled"),
    ("", "baseline, again: rerun changing nothing (R)", "settled"),
    ("page switch", "page switch (overview <-> errors)", "settled"),
    ("", "patient viewer: open (page switch; slide rebuilt, first time)", "settled"),
    ("", "patient viewer: add a second overlay (Probability)", "settled"),
    ("patient viewer, largest slide, 2 overlays", "patient viewer: another of the 3 largest slides, 2 overlays (first time: rebuilt)", "settled"),
    ("patient viewer, largest slide, 2 overlays", "patient viewer: another of the 3 largest slides, 2 overlays (seen before)", "settled"),
    ("", "Grad-CAM: inspector opened (first Grad-CAM: loads the model)", "cam"),
    ("Grad-CAM of a new patch", "Grad-CAM: next patch's Grad-CAM (model warm)", "cam"),
    ("", "Grad-CAM: next patch's Grad-CAM (model warm)", "settled"),
    ("overview first render after server start", "overview first render after server start", "settled"),
    ("", "overview, a new session (server warm)", "settled"),
]


def print_summary(results: dict) -> None:
    timings = results["timings"]
    print("\nmedians in ms (n tries), from the user's action; 'last' = last DOM change seen (charts drawn late)")
    print(f"  {'what':<78}{'measure':>9}{'median':>9}{'last':>8}{'n':>4}{'target':>9}")
    for target, name, key in SUMMARY:
        samples = timings.get(name) or []
        value = median(samples, key)
        if value is None:
            continue
        limit = TARGETS_MS.get(target)
        mark = "" if limit is None else (" ok" if value < limit else " MISSED")
        print(f"  {name:<78}{key:>9}{value:>9.0f}{median(samples, 'last DOM change') or 0:>8.0f}{len(samples):>4}"
              f"{f'<{limit}' if limit else '':>9}{mark}")
    rss = results.get("rss_mb", {})
    print(f"  server started (health check) in {results['server healthy (s)']:.1f} s")
    print("  server RSS (process tree): " + ", ".join(f"{k} {v:,.0f} MB" for k, v in rss.items())
          + (f" (target < {RSS_TARGET_MB:,} MB with 5; second session +{rss['2 sessions'] - rss['1 session']:,.0f} MB)"
             if rss else ""))


def main(argv=None) -> int:
    from pipeline import store

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("full", "small"), default="full",
                        help="full: the full-dataset-size run (built once under --cache); small: ./runs or a small run")
    parser.add_argument("--runs", type=Path, help="measure the newest run of this runs folder instead")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"where built runs are kept ({DEFAULT_CACHE})")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the full-scale run")
    parser.add_argument("--build-only", action="store_true", help="build (or find) the run, measure nothing")
    parser.add_argument("--tries", type=int, default=7, help="timed repeats of each action (median shown)")
    parser.add_argument("--split", default="test", choices=(*store.SPLITS, "all"))
    parser.add_argument("--json", type=Path, help="also write every sample to this JSON file")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"skipped: no Chromium at {CHROMIUM} (apt install chromium)")
        return 0
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("skipped: Playwright is not installed (pip install playwright; the browser is Debian's)")
        return 0
    if args.runs:
        runs = args.runs
    elif args.scale == "full":
        runs = full_scale_run(args.cache, args.rebuild)
    else:
        runs = small_runs(args.cache)
    if args.build_only:
        print(f"runs folder: {runs}")
        return 0
    args.cache.mkdir(parents=True, exist_ok=True)
    results = measure(runs, args.tries, args.cache / "bench_browser_server.log", args.split)
    print_summary(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
