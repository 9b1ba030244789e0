"""Patient viewer: the rebuilt slide with switchable overlays, the patient's metrics, the patch inspector."""
import streamlit as st

from app import charts, loaders, overlays, patch_panel, selection, slides, state, ui
from pipeline import metrics, store

REGION_OUTLINE = "True region outline"
SINGLE, LINKED = "Single view", "Ground truth | prediction"

ss = st.session_state
run = state.current_run()
threshold = ss.threshold

st.title("Patient viewer")
reviews = loaders.run_reviews(run)
ui.reviews_problem(reviews)
patient_id = ui.patient_picker(run, reviews)
ui.slide_done_control(run, patient_id)
slide = loaders.slide(run, patient_id)
rows = slide.rows
label, prob = rows["label"].to_numpy(), rows["prob"].to_numpy()
outcome = selection.outcome_names(label, prob, threshold)
has_label = store.labelled(label)  # patches of a slide ingested without annotations have none
n_labelled = int(has_label.sum())
NO_LABELS = "not defined (no labels)"

at = metrics.metrics_at(label[has_label], prob[has_label], threshold) if n_labelled else None
ui.scope_caption(f"patient {patient_id} ({rows['split'].iat[0]} split): {len(rows):,} patches "
                 + (f"({at['tp'] + at['fn']:,} IDC" + (f" among {n_labelled:,} labelled" if n_labelled < len(rows)
                                                        else "") + ")" if at else "(unlabelled)")
                 + f", at threshold {threshold:.3f}")
undefined = (selection.undefined_patient_rates(at["tp"] + at["fn"], at["tn"] + at["fp"]) if at
             else dict.fromkeys(("sensitivity", "specificity", "f1"), "no labels"))


def rate(name: str) -> str:
    # Undefined rates say so (the reason under the tiles), never 0.000 or nan.
    if at is None:
        return NO_LABELS
    return "not defined" if name in undefined else f"{at[name]:.3f}"


tiles = st.columns(6)
tiles[0].metric("True IDC", f"{100 * (label[has_label] == 1).mean():.1f} %" if at else NO_LABELS)
tiles[1].metric("Predicted IDC", f"{100 * (prob >= threshold).mean():.1f} %")
tiles[2].metric("Sensitivity", rate("sensitivity"),
                help=undefined.get("sensitivity", "Share of the IDC patches called IDC"))
tiles[3].metric("Specificity", rate("specificity"),
                help=undefined.get("specificity", "Share of the non-IDC patches called non-IDC"))
tiles[4].metric("F1", rate("f1"), help=undefined.get("f1", "Harmonic mean of precision and sensitivity"))
tiles[5].metric("Errors (FP / FN)", f"{at['fp']:,} / {at['fn']:,}" if at else NO_LABELS)
if at is None:
    st.caption(":material/label_off: This patient is unlabelled (its slide was ingested without annotations): "
               "the ground truth and error overlays stay transparent and its metrics are not defined; the "
               "prediction and probability overlays show the model's calls.")
else:
    if n_labelled < len(rows):
        st.caption(f":material/label_off: {len(rows) - n_labelled:,} of {len(rows):,} patches of this patient are "
                   "unlabelled: its metrics are measured on the labelled ones, and the ground truth and error "
                   "overlays stay transparent on the others.")
    for line in selection.undefined_rates_text(undefined):
        st.caption(f":material/info: {line}")
# A run without any label opens on the overlays that need none.
default_overlays = ([overlays.ERRORS] if store.labelled(run.table["label"].to_numpy()).any()
                    else ["Probability"])


def _patch_clicked() -> None:
    # Only the invisible patch markers are selectable; each panel has one, in the order of `rows`.
    points = [p for p in ss.slide_chart.selection.points if "customdata" in p]
    if points:
        state.open_patch(patient_id, int(rows.index[points[0]["point_index"]]))


def _toggle_overlays() -> None:
    ss.overlays_hidden = not ss.get("overlays_hidden", False)


@state.fragment
def slide_view() -> None:
    """Overlay controls, the slide and the inspector; an overlay change or a click reruns only this part
    (state.fragment keeps the URL in sync after it)."""
    names = [*overlays.OVERLAY_NAMES, *([overlays.PATCH_ALONE] if run.has_context else []),
             *([REGION_OUTLINE] if slide.region_mask is not None else [])]
    chosen = st.pills("Overlays", names, selection_mode="multi", key="overlays",
                      default=[*default_overlays, *([REGION_OUTLINE] if slide.region_mask is not None else [])])
    layout_col, opacity_col, tn_col, hide_col = st.columns([3, 3, 2, 2], vertical_alignment="bottom")
    layout = layout_col.segmented_control("Layout", [SINGLE, LINKED], default=SINGLE, required=True, key="slide_layout",
                                          help="Ground truth and prediction side by side, zoom and pan linked")
    opacity = opacity_col.slider("Overlay opacity", 0.0, 1.0, 0.4, 0.05, key="overlay_opacity")
    show_tn = tn_col.toggle("Colour true negatives", key="show_tn",
                            help="True negatives (correct non-IDC) are left clear by default, so only what matters "
                                 "is coloured: false positives, false negatives and IDC found (TP)")
    hidden = ss.get("overlays_hidden", False)
    hide_col.button("Show overlays" if hidden else "Hide overlays", icon=":material/layers:", on_click=_toggle_overlays,
                    key="toggle_overlays", shortcut="h", width="stretch",
                    help="Show or hide every overlay at once, to see the bare tissue (keyboard: H)")

    verdicts = loaders.run_reviews(run).verdicts().reindex(rows.index).fillna("").to_numpy()

    def build(name):
        return overlays.build(name, rows, threshold, slide.grid_shape, verdicts, show_tn=show_tn)

    outline = None if hidden or REGION_OUTLINE not in chosen else slide.region_contour
    if layout == SINGLE:
        panels = [("", [] if hidden else [build(n) for n in chosen if n != REGION_OUTLINE])]
    else:
        panels = [("Ground truth (label)", [] if hidden else [build("Ground truth")]),
                  (f"Prediction at threshold {threshold:.3f}", [] if hidden else [build("Prediction")])]
    selected = ss.patch if ss.patch is not None and ss.patch in rows.index else None
    selected_xy = None if selected is None else (int(rows.at[selected, "x"]), int(rows.at[selected, "y"]))
    figure = charts.slide_figure(slide.image_uri, slide.shape, rows, outcome, panels, opacity, outline, selected_xy,
                                 revision=f"{run.name}/{patient_id}/{layout}")
    ui.fit_overlays_to_slide(figure, slide.shape)  # edge patches' overlay cells at their true size
    ui.add_scale_bar(figure, slide.shape, run.mpp, len(panels))
    st.plotly_chart(figure, key="slide_chart", on_select=_patch_clicked, selection_mode="points",
                    config={"scrollZoom": True, "displaylogo": False})

    def export_png() -> bytes:
        mask = None if outline is None else slide.region_mask
        views = [overlays.compose(slide.rgb, panel, opacity, mask) for _, panel in panels]
        return slides.png_bytes(slides.side_by_side([slides.draw_scale_bar(view, run.mpp)[0] for view in views]))

    note_col, export_col = st.columns([3, 1], vertical_alignment="center")
    note_col.caption("Drag to pan, scroll to zoom, double-click to reset; click a patch to inspect it. "
                     "The camera icon saves the current zoom; the button saves the whole slide at full resolution.")
    export_col.download_button("Download view (PNG)", data=export_png, on_click="ignore", icon=":material/image:",
                               file_name=f"{run.name}_patient{patient_id}_t{threshold:.3f}.png", mime="image/png")

    ui.patch_picker(rows, outcome, "Patch (or click it on the slide)")
    if selected is not None:
        patch_panel.render(run, selected, threshold)
    else:
        patch_panel.first_patch_key(run, patient_id, threshold)


slide_view()
