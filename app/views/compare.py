"""Compare runs: the sidebar's run (A) against another run of the same cohort (B), paired, on the patches
both scored in the sidebar's split; then where they disagree, on the slide and in a gallery."""
import json

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, loaders, overlays, selection, slides, state, ui
from pipeline import compare_runs, evaluate, store
from pipeline.errors import UsageError

PER_PAGE = 12
COLUMNS = 4
ZOOM = 5  # 50 px -> 250 px, as in the errors gallery
OWN, SHARED = "Each run's own threshold", "The shared threshold"
THIS_PATIENT, WHOLE_SPLIT = "This patient", "The whole split"
AGREEMENT_BADGES = {"A only right": ":orange-badge[A only right]", "B only right": ":blue-badge[B only right]",
                    "both right": ":green-badge[both right]", "both wrong": ":violet-badge[both wrong]"}

ss = st.session_state
run_a = state.current_run()
split = ss.split

st.title("Compare runs")

# --------------------------------------------------------------------------- run B
others = [p for p in loaders.find_runs() if p.name != run_a.name]
if not others:
    st.info("Comparing needs a second run of the same cohort: train another model on the same data folder, "
            "e.g. with another architecture, then reload this page.", icon=":material/compare_arrows:")
    st.code(f"python -m pipeline run --data {run_a.meta.get('data_root', 'DIR')} --out "
            f"{loaders.runs_dir()}/{run_a.name}-plain --arch plain", language="bash")
    state.stop()
by_name = {p.name: p for p in others}
# compare_b: the newest other run that loads unless one was picked (state.resolve_view's page default)
state.bound(st.selectbox, "Run B, compared with run A (the sidebar's run)", "compare_b", options=list(by_name),
            format_func=lambda name: state.run_label(by_name[name]), help="Differences are B - A. Pick run A in the sidebar.")
name_b = ss.compare_b
try:
    run_b = loaders.load_run(by_name[name_b])
except store.ArtifactError as exc:
    st.error(f"Run B ({name_b}) cannot be opened: {loaders.public_message(exc, by_name[name_b])}",
             icon=":material/error:")
    state.stop()
if run_b.synthetic and not run_a.synthetic:  # A's banner is drawn by app/main.py
    ui.synthetic_banner(run_b)
try:
    pairs = loaders.run_pairs(run_a, run_b)
except UsageError as exc:
    st.error(str(exc), icon=":material/error:")
    state.stop()
st.markdown(f"**A** = `{run_a.name}` ({run_a.meta.get('arch', '?')}) · **B** = `{run_b.name}` "
            f"({run_b.meta.get('arch', '?')}) · differences are B - A"
            + (" · both SYNTHETIC" if run_a.synthetic and run_b.synthetic else ""))

# --------------------------------------------------------------------------- thresholds and scope
presets = compare_runs.preset_names(run_a, run_b)
preset = st.selectbox(
    "Each run's own threshold", presets, key="compare_preset", format_func=evaluate.PRESET_LABELS.get,
    index=presets.index(compare_runs.DEFAULT_PRESET) if compare_runs.DEFAULT_PRESET in presets else 0,
    help="Each run at this preset of its own evaluation (chosen on its own validation patients). "
         "The shared threshold is the sidebar's.")
threshold_a, threshold_b = compare_runs.own_threshold(run_a, preset), compare_runs.own_threshold(run_b, preset)
shared = {"threshold": float(ss.threshold), "source": "the sidebar's threshold"}
paired = loaders.paired_split(run_a, run_b, split)
counts = paired.counts
where = "all splits" if split == "all" else f"the {split} split of both runs"
ui.scope_caption(f"{where}: {counts['patients']:,} patient{'s' * (counts['patients'] != 1)}, "
                 f"{counts['patches']:,} patches ({counts['positive']:,} IDC) scored by both runs; "
                 f"A at {threshold_a['threshold']:.3f} ({threshold_a['source']}), "
                 f"B at {threshold_b['threshold']:.3f} ({threshold_b['source']}), "
                 f"shared threshold {shared['threshold']:.3f} (the sidebar's)")
if not len(paired.rows):
    st.warning(f"No patch is in {where}: the runs' splits differ. Pick another split in the sidebar "
               "(e.g. all splits).", icon=":material/warning:")
    state.stop()

# --------------------------------------------------------------------------- the figures
if paired.boot is None:
    st.warning(f"{paired.problem} Pick another split in the sidebar (e.g. all splits) for intervals; the slide "
               "and the gallery below still show where the runs disagree.", icon=":material/warning:")
else:
    with st.spinner("Computing the intervals (ROC-AUC and PR-AUC once per pair of runs and split)..."):
        result = compare_runs.compare_paired(paired, threshold_a, threshold_b, shared,
                                             runs={"a": compare_runs.describe_run(run_a),
                                                   "b": compare_runs.describe_run(run_b)})
    for warning in result["warnings"]:
        if not warning.startswith("SYNTHETIC"):
            st.caption(f":material/warning: {warning}.")
    own_tab, shared_tab = st.tabs([f"At each run's own threshold (A {threshold_a['threshold']:.3f}, "
                                   f"B {threshold_b['threshold']:.3f})",
                                   f"At the shared threshold {shared['threshold']:.3f}"])
    for tab, at in ((own_tab, "own"), (shared_tab, "shared")):
        with tab:
            st.dataframe(pd.DataFrame(compare_runs.table_rows(result, at)), hide_index=True, width="stretch",
                         column_config={"B - A": st.column_config.TextColumn("B - A", help="paired difference")})
    lines = compare_runs.significance_lines(result)
    st.markdown("  \n".join(f"- {line}" for line in lines))
    st.caption("Intervals: 95% percentile bootstrap over patients (patients resampled with replacement, the same "
               "resamples for both runs). McNemar's test counts patches as independent, which patches of one "
               "patient are not, so its p-value is too small when errors cluster by patient: the intervals are "
               "the primary figures.")
    st.info(result["sentence"], icon=":material/balance:")
    st.download_button("Download the comparison (JSON)", data=json.dumps(result, indent=2, default=str),
                       file_name=f"compare_{run_a.name}_vs_{run_b.name}_{split}.json", mime="application/json",
                       on_click="ignore", icon=":material/download:")

# --------------------------------------------------------------------------- where they disagree
st.subheader("Where the two runs disagree")
calls = st.segmented_control("Calls on the slide and in the gallery", [OWN, SHARED], default=OWN, required=True,
                             key="compare_calls")
ta, tb = ((threshold_a["threshold"], threshold_b["threshold"]) if calls == OWN
          else (shared["threshold"], shared["threshold"]))
compared = paired.rows
codes = compare_runs.agreement_outcomes(compared["label"].to_numpy(), compared["prob_a"].to_numpy(),
                                        compared["prob_b"].to_numpy(), ta, tb)
disagree = pd.Series((codes <= compare_runs.B_ONLY).astype(int), index=compared.index)
per_patient = disagree.groupby(compared["patient_id"].to_numpy()).agg(["size", "sum"])
pids = [p for p in loaders.patients(run_a)["patient_id"] if p in per_patient.index]  # test patients first
patient_id = state.fit_patient(pids)  # the open patient, or the first both runs scored here
state.bound(st.selectbox, "Patient", "patient", options=pids,
            format_func=lambda p: f"{p} · {per_patient.at[p, 'size']:,} patches · "
                                  f"{per_patient.at[p, 'sum']:,} where the calls differ",
            on_change=lambda: ss.update(patch=None))
slide = loaders.slide(run_a, patient_id)
rows = slide.rows
prob_a = rows["prob"].to_numpy(np.float64)
prob_b = pairs["prob_b"].reindex(rows.index).to_numpy(np.float64)  # NaN where B did not score the patch
names = compare_runs.agreement_names(rows["label"].to_numpy(), prob_a, prob_b, ta, tb)
tiles = st.columns(len(compare_runs.AGREEMENT))
for tile, name in zip(tiles, compare_runs.AGREEMENT):
    tile.metric(name, f"{int((names == name).sum()):,}")
ui.scope_caption(f"patient {patient_id} ({rows['split'].iat[0]} split of A): {len(rows):,} patches, "
                 f"A at {ta:.3f}, B at {tb:.3f}")


def _patch_clicked() -> None:
    points = [p for p in ss.compare_slide.selection.points if "customdata" in p]
    if points:
        state.go_to("inspector", patient=patient_id, patch=int(rows.index[points[0]["point_index"]]))


opacity_col, agreeing_col = st.columns([3, 2], vertical_alignment="bottom")
opacity = opacity_col.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="compare_opacity")
agreeing = agreeing_col.toggle("Colour the agreeing patches too", value=True, key="compare_agreeing",
                               help="Off: only the patches where exactly one run is right are coloured")
overlay = overlays.disagreement(rows, prob_a, prob_b, ta, tb, slide.grid_shape, agreeing)
hover = [f"{n} · P(IDC) of B {pb:.3f}" if n else "not scored by B" for n, pb in zip(names, prob_b)]
figure = charts.slide_figure(slide.image_uri, slide.shape, rows, np.asarray(hover), [("", [overlay])], opacity,
                             slide.region_contour, revision=f"compare/{run_a.name}/{run_b.name}/{patient_id}")
st.plotly_chart(figure, key="compare_slide", on_select=_patch_clicked, selection_mode="points",
                config={"scrollZoom": True, "displaylogo": False})
st.caption("The slide of run A; P(IDC) in the hover is A's. Orange: only A is right; blue: only B is right. "
           "Click a patch to open it in the Patch inspector (run A).")

# --------------------------------------------------------------------------- the gallery
st.subheader("Patches where they disagree most")
scope = st.segmented_control("Patches of", [THIS_PATIENT, WHOLE_SPLIT], default=THIS_PATIENT, required=True,
                             key="compare_gallery_scope")
source = compared[compared["patient_id"] == patient_id] if scope == THIS_PATIENT else compared
items = compare_runs.most_disagreeing(source, source["prob_a"], source["prob_b"], ta, tb)
who = f"patient {patient_id}" if scope == THIS_PATIENT else where
ui.scope_caption(f"{who}: {len(items):,} of {len(source):,} patches where exactly one run is right "
                 f"(A at {ta:.3f}, B at {tb:.3f}), the largest |P_A - P_B| first")
if not len(items):
    st.success("The two runs make the same call on every patch here.", icon=":material/check_circle:")
    state.stop()
number = st.pagination(selection.n_pages(len(items), PER_PAGE), key="compare_gallery_page")
start, stop = selection.page_bounds(len(items), number, PER_PAGE)
shown = items.iloc[start:stop].join(run_a.table[["patient_id", "x", "y", "label"]])
st.caption(f"Showing {start + 1:,}-{stop:,} of {len(items):,}")
patches = np.asarray(run_a.patches[shown.index.to_numpy()])
for first in range(0, len(shown), COLUMNS):
    for col, (row, item), image in zip(st.columns(COLUMNS), shown.iloc[first:first + COLUMNS].iterrows(),
                                       patches[first:first + COLUMNS]):
        with col.container(border=True):
            st.image(slides.upscale_nearest(image, ZOOM), width="stretch")
            st.markdown(f"{AGREEMENT_BADGES[item['agreement']]} label **{'IDC' if item['label'] else 'non-IDC'}**"
                        f"  \nP_A **{item['prob_a']:.3f}** · P_B **{item['prob_b']:.3f}**"
                        f"  \n{item['patient_id']} · x {item['x']}, y {item['y']}")
            st.button("Inspect (run A)", icon=":material/zoom_in:", key=f"compare_inspect_{row}",
                      on_click=state.go_to, args=("inspector",),
                      kwargs={"patient": item["patient_id"], "patch": row}, width="stretch")
