"""Plotly figures for the dashboard. Pure: data in, ``go.Figure`` out, no Streamlit.

The slide view follows one rule for speed: the slide goes to the browser once as a JPEG (a layout
image at a URL the app serves, app.loaders.slide_url; ``go.Image`` when given a data URI) and every
overlay is a patch-resolution ``go.Heatmap`` (one cell per 50-px patch, NaN = transparent) placed in
slide pixel coordinates, so redrawing an overlay sends a few thousand numbers, not megapixels. Patches are clickable through an invisible marker at each
patch centre, since Plotly reports no selection events for heatmaps or images.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import overlays as ov
from app.slides import PATCH
from pipeline import store

CELL_CENTRE = (PATCH - 1) / 2  # centre of the first cell in pixel coordinates (pixel i spans i +- 0.5)
HIGHLIGHT_COLOUR = ov.OKABE_ITO["blue"]
SLIDE_VIEW_WIDTH_PX = 1000  # about the main column's width in the wide layout
SLIDE_HEIGHT_RANGE_PX = (420, 820)
# No Plotly template: st.plotly_chart applies the Streamlit theme, and resolving a template costs ~20 ms a figure.
CURVE_LAYOUT = dict(height=340, margin=dict(l=10, r=10, t=40, b=10))


# --------------------------------------------------------------------------- slide view
def _colorscale(overlay: ov.Overlay) -> list:
    if not overlay.categorical:
        n = len(overlay.colours)
        return [[i / (n - 1), c] for i, c in enumerate(overlay.colours)]
    n = len(overlay.colours)  # one flat band per category, so z = i paints colour i exactly
    return [pair for i, c in enumerate(overlay.colours) for pair in ([i / n, c], [(i + 1) / n, c])]


def _overlay_trace(overlay: ov.Overlay, opacity: float) -> go.Heatmap:
    common = dict(z=overlay.grid, x0=CELL_CENTRE, dx=PATCH, y0=CELL_CENTRE, dy=PATCH, opacity=opacity,
                  colorscale=_colorscale(overlay), hoverinfo="skip", name=overlay.name)
    if overlay.categorical:
        return go.Heatmap(**common, zmin=-0.5, zmax=len(overlay.colours) - 0.5, showscale=False)
    return go.Heatmap(**common, zmin=0.0, zmax=1.0,
                      colorbar=dict(title=dict(text="P(IDC)"), len=0.6, thickness=12, x=1.0))


def _legend_entries(overlay_list: list[ov.Overlay], outline: bool) -> list[go.Scatter]:
    """Heatmaps have no legend entries, so each category gets a stand-in square marker."""
    entries = [(label, colour) for o in overlay_list if o.categorical for label, colour in zip(o.labels, o.colours)]
    traces = [go.Scatter(x=[None], y=[None], mode="markers", name=label, showlegend=True,
                         marker=dict(symbol="square", size=12, color=colour)) for label, colour in entries]
    if outline:
        traces.append(go.Scatter(x=[None], y=[None], mode="lines", name="true IDC region (synthetic)",
                                 line=dict(color=ov.REGION_OUTLINE_COLOUR, width=2)))
    return traces


def _patch_markers(rows: pd.DataFrame, outcome: np.ndarray) -> go.Scatter:
    """One invisible, clickable marker per patch; hover shows what a pathologist asks first."""
    custom = np.column_stack([rows.index.to_numpy(), rows["x"], rows["y"], rows["label"], rows["prob"]])
    label = rows["label"].to_numpy()
    label_text = np.where(store.labelled(label), label.astype(str), "none (unlabelled)")
    return go.Scatter(
        x=rows["x"].to_numpy() - 1 + CELL_CENTRE, y=rows["y"].to_numpy() - 1 + CELL_CENTRE,
        mode="markers", customdata=custom, text=np.char.add(np.char.add(label_text, "<br>"), np.asarray(outcome, str)),
        showlegend=False, name="patches",
        marker=dict(symbol="square", size=10, color="rgba(0,0,0,0)"),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
        hoverlabel=dict(bgcolor="white", font=dict(color="black")),
        hovertemplate=("patch x %{customdata[1]}, y %{customdata[2]}<br>label %{text}"
                       "<br>P(IDC) %{customdata[4]:.3f}<extra>click to inspect</extra>"),
    )


def _highlight(x: int, y: int) -> go.Scatter:
    x0, y0 = x - 1.5, y - 1.5
    return go.Scatter(x=[x0, x0 + PATCH, x0 + PATCH, x0, x0], y=[y0, y0, y0 + PATCH, y0 + PATCH, y0],
                      mode="lines", line=dict(color=HIGHLIGHT_COLOUR, width=3), hoverinfo="skip",
                      showlegend=False, name="selected patch")


def _region_trace(contour_xy: tuple[np.ndarray, np.ndarray]) -> go.Scatter:
    return go.Scatter(x=contour_xy[0], y=contour_xy[1], mode="lines", hoverinfo="skip", showlegend=False,
                      line=dict(color=ov.REGION_OUTLINE_COLOUR, width=2), name="true IDC region")


def slide_figure(image_uri: str, shape: tuple[int, int], rows: pd.DataFrame, outcome: np.ndarray,
                 panels: list[tuple[str, list[ov.Overlay]]], opacity: float,
                 region_contour: tuple[np.ndarray, np.ndarray] | None = None,
                 selected_xy: tuple[int, int] | None = None, revision: str = "") -> go.Figure:
    """The slide with overlays; several ``panels`` (title, overlays) are shown side by side, linked.

    Linked panels share both axes, so zooming or panning one moves the other; ``revision`` keeps
    the user's zoom while overlays or the threshold change (Plotly's uirevision).
    """
    h, w = shape
    # Size the figure to the slide's aspect ratio so little of it is empty margin.
    height = int(np.clip(SLIDE_VIEW_WIDTH_PX / len(panels) * h / max(w, 1) + 60, *SLIDE_HEIGHT_RANGE_PX))
    fig = make_subplots(rows=1, cols=len(panels), shared_xaxes=True, shared_yaxes=True,
                        horizontal_spacing=0.02, subplot_titles=[title for title, _ in panels])
    by_url = not image_uri.startswith("data:")  # a served file (loaders.slide_url): a layout image, see below
    for col, (_, panel_overlays) in enumerate(panels, start=1):
        if not by_url:
            fig.add_trace(go.Image(source=image_uri, x0=0, dx=1, y0=0, dy=1, hoverinfo="skip", name="slide"), 1, col)
        for overlay in panel_overlays:
            fig.add_trace(_overlay_trace(overlay, opacity), 1, col)
        if region_contour is not None:
            fig.add_trace(_region_trace(region_contour), 1, col)
        if selected_xy is not None:
            fig.add_trace(_highlight(*selected_xy), 1, col)
        fig.add_trace(_patch_markers(rows, outcome), 1, col)
    shown = {o.name: o for _, panel_overlays in panels for o in panel_overlays}
    for entry in _legend_entries(list(shown.values()), region_contour is not None):
        fig.add_trace(entry, 1, 1)
    fig.update_xaxes(range=[-0.5, w - 0.5], matches="x", showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x", constrain="domain")
    fig.update_layout(
        height=height, margin=dict(l=0, r=0, t=30, b=50), dragmode="pan", hovermode="closest",
        uirevision=revision, plot_bgcolor="white", clickmode="event+select",
        legend=dict(orientation="h", yanchor="top", y=-0.06, xanchor="left", x=0),
    )
    if by_url:
        # Plotly's image trace takes data URIs only (and decodes them into a canvas on every redraw); a layout
        # image takes a URL, which the browser fetches and decodes once. Same pixel grid: pixel i spans i +- 0.5.
        fig.update_layout(images=[dict(source=image_uri, xref="x" if col == 1 else f"x{col}",
                                       yref="y" if col == 1 else f"y{col}", x=-0.5, y=-0.5, sizex=w, sizey=h,
                                       xanchor="left", yanchor="top", sizing="stretch", layer="below", name="slide")
                                  for col in range(1, len(panels) + 1)])
    return fig


# --------------------------------------------------------------------------- cohort charts
def _point_trace(x: float, y: float, label: str) -> go.Scatter:
    return go.Scatter(x=[x], y=[y], mode="markers", name=label,
                      marker=dict(size=13, color=ov.OKABE_ITO["vermillion"], symbol="x"))


def curve_figures(curves: dict) -> dict[str, go.Figure]:
    """The threshold-free figures of one split (``app.cohort.curves``), built once and shared (never
    changed afterwards): ROC and PR without their operating point (:func:`with_point` adds it), calibration."""
    return {"roc": roc_figure(curves["roc"], curves["roc_auc"], None, ""),
            "pr": pr_figure(curves["pr"], curves["pr_auc"], curves["prevalence"], None, ""),
            "reliability": reliability_figure(curves["reliability"], curves["ece"])}


def with_point(base: go.Figure, point: dict, label: str) -> go.Figure:
    """A copy of the cached ROC or PR figure ``base`` (left unchanged) with the threshold's operating point:
    only the marker is new on a threshold change, and nothing is validated again."""
    x, y = (point["fpr"], point["tpr"]) if base.layout.title.text == "ROC curve" else (point["recall"],
                                                                                        point["precision"])
    out = base.to_dict()
    out["data"].append(_point_trace(x, y, label).to_plotly_json())
    return go.Figure(out, _validate=False)


def roc_figure(curve, auc: float, point: dict | None, label: str) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"),
                             name="chance", hoverinfo="skip"))
    if curve is not None:
        fig.add_trace(go.Scatter(x=curve[0], y=curve[1], mode="lines", name=f"ROC (AUC {auc:.3f})",
                                 line=dict(color=ov.OKABE_ITO["blue"]),
                                 hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<extra></extra>"))
    if point is not None:
        fig.add_trace(_point_trace(point["fpr"], point["tpr"], label))
    fig.update_layout(title="ROC curve", xaxis_title="False positive rate (1 - specificity)",
                      yaxis_title="True positive rate (sensitivity)", **CURVE_LAYOUT,
                      legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom"))
    fig.update_xaxes(range=[0, 1]).update_yaxes(range=[0, 1.02])
    return fig


def pr_figure(curve, ap: float, prevalence: float, point: dict | None, label: str) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[prevalence, prevalence], mode="lines", hoverinfo="skip",
                             line=dict(dash="dot", color="#999"), name=f"chance (prevalence {prevalence:.2f})"))
    if curve is not None:
        fig.add_trace(go.Scatter(x=curve[0], y=curve[1], mode="lines", name=f"PR (AP {ap:.3f})",
                                 line=dict(color=ov.OKABE_ITO["blue"], shape="hv"),
                                 hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<extra></extra>"))
    if point is not None:
        fig.add_trace(_point_trace(point["recall"], point["precision"], label))
    fig.update_layout(title="Precision-recall curve", xaxis_title="Recall (sensitivity)",
                      yaxis_title="Precision (PPV)", **CURVE_LAYOUT,
                      legend=dict(x=0.02, y=0.02, xanchor="left", yanchor="bottom"))
    fig.update_xaxes(range=[0, 1]).update_yaxes(range=[0, 1.02])
    return fig


def reliability_figure(bins: dict, ece: float) -> go.Figure:
    count = np.asarray(bins["count"])
    filled = count > 0
    centres = (np.asarray(bins["lower"]) + np.asarray(bins["upper"])) / 2
    fig = go.Figure()
    fig.add_trace(go.Bar(x=centres, y=count / max(count.sum(), 1), width=0.1, name="share of patches in bin",
                         marker_color="#ddd", hovertemplate="%{y:.1%} of patches<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"),
                             name="perfect calibration", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=np.asarray(bins["mean_pred"])[filled], y=np.asarray(bins["frac_pos"])[filled],
                             customdata=count[filled], mode="lines+markers", name=f"model (ECE {ece:.3f})",
                             line=dict(color=ov.OKABE_ITO["blue"]),
                             hovertemplate="mean P(IDC) %{x:.3f}<br>observed IDC %{y:.3f}"
                                           "<br>%{customdata:,} patches<extra></extra>"))
    fig.update_layout(title="Calibration (reliability)", xaxis_title="Mean predicted P(IDC) in bin",
                      yaxis_title="Observed IDC fraction", **CURVE_LAYOUT,
                      legend=dict(x=0.02, y=0.98, xanchor="left", yanchor="top"))
    fig.update_xaxes(range=[0, 1]).update_yaxes(range=[0, 1.02])
    return fig


def histogram_figure(hist: dict, threshold: float, log_counts: bool = False) -> go.Figure:
    edges = hist["edges"]
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig = go.Figure()
    for key, name, colour in (("non_idc", "label: non-IDC", ov.OKABE_ITO["sky_blue"]),
                              ("idc", "label: IDC", ov.OKABE_ITO["vermillion"]),
                              ("unlabelled", "unlabelled", "#7f7f7f")):
        if key not in hist:  # 'unlabelled': cohort.unlabelled_histogram, for a run without labels
            continue
        fig.add_trace(go.Bar(x=centres, y=hist[key], width=width, name=name, marker_color=colour, opacity=0.75,
                             hovertemplate="P(IDC) %{x:.2f}: %{y:,} patches<extra>" + name + "</extra>"))
    # A plain layout shape: add_vline's subplot handling costs ~20 ms per redraw.
    fig.update_layout(
        shapes=[dict(type="line", x0=threshold, x1=threshold, y0=0, y1=1, yref="paper",
                     line=dict(color="black", width=2, dash="dash"))],
        annotations=[dict(x=threshold, y=1, yref="paper", yanchor="bottom", showarrow=False,
                          text=f"threshold {threshold:.3f}")])
    fig.update_layout(title="Patch probabilities", barmode="overlay", xaxis_title="Calibrated P(IDC)",
                      yaxis_title="Patches", **CURVE_LAYOUT,
                      legend=dict(x=0.5, y=0.98, xanchor="center", yanchor="top", orientation="h"))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(type="log" if log_counts else "linear")
    return fig


def confusion_figure(at: dict) -> go.Figure:
    """2x2 counts, rows = true label, columns = prediction, coloured by share of their true class."""
    counts = np.array([[at["tn"], at["fp"]], [at["fn"], at["tp"]]], dtype=float)
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = np.array([["TN", "FP"], ["FN", "TP"]])
    text = [[f"{names[r, c]}<br>{int(counts[r, c]):,}<br>{row_share[r, c]:.1%} of row" for c in range(2)]
            for r in range(2)]
    fig = go.Figure(go.Heatmap(z=row_share, x=["predicted non-IDC", "predicted IDC"],
                               y=["true non-IDC", "true IDC"], text=text, texttemplate="%{text}",
                               colorscale="Blues", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    fig.update_layout(title="Confusion matrix", **{**CURVE_LAYOUT, "height": 300})
    fig.update_yaxes(autorange="reversed")
    return fig
