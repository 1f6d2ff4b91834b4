"""The report's figures, drawn with matplotlib from scikit-learn curves, and saved as PNG.

Every function returns a :class:`matplotlib.figure.Figure` made without pyplot (no GUI backend, no global figure
state; it renders with Agg wherever it runs); :func:`save_figure` writes it. Images are
shown as radiologists read them: rows top to bottom, columns left to right, bone bright. The package loads
images as ``(1, W, H)`` (axis 0 is x), so arrays are transposed to ``(H, W)`` before drawing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Rectangle
from matplotlib.ticker import PercentFormatter
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from cxrkd_monai.metrics.bootstrap import BootstrapInterval

__all__ = [
    "ImagePanel",
    "auroc_difference_figure",
    "froc_figure",
    "overlay_figure",
    "pr_curves_figure",
    "reliability_figure",
    "roc_curves_figure",
    "save_figure",
    "thumbnails_figure",
    "training_curve_figure",
    "uncertainty_figure",
]

DPI = 110
COLOURS = matplotlib.colormaps["tab10"].colors
GROUND_TRUTH_COLOUR = "#2ecc71"
DETECTION_COLOUR = "#ff2bd6"
MAP_VISIBLE_FRACTION = 0.2
"""Map values below this fraction of the colour scale's top are left transparent, so the radiograph stays readable."""

REPORT_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}
"""matplotlib settings of every report figure, applied per figure (:func:`_report_style`), never globally."""


def _report_style(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a figure function under :data:`REPORT_STYLE` (an ``rc_context``), leaving the caller's settings alone."""

    @functools.wraps(draw)
    def styled(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(REPORT_STYLE):
            return draw(*args, **kwargs)

    return styled


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as PNG to ``path`` (folder created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(REPORT_STYLE):
        figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _interval_label(name: str, interval: BootstrapInterval | None) -> str:
    return name if interval is None or not math.isfinite(interval.estimate) else f"{name}: {interval.format()}"


def _defined(labels: np.ndarray) -> bool:
    return len(labels) > 0 and 0 < labels.sum() < len(labels)


@_report_style
def roc_curves_figure(
    probabilities: np.ndarray,
    labels: np.ndarray,
    observed: np.ndarray,
    class_names: Sequence[str],
    aurocs: Mapping[str, BootstrapInterval] | None = None,
) -> Figure:
    """One ROC curve per class over its observed labels; the legend gives each AUROC with its interval.

    Args:
        probabilities, labels, observed: ``(N, K)`` scores, binary labels and the observed-label mask.
        class_names: the ``K`` class names.
        aurocs: per class name, the AUROC interval shown in the legend.
    """
    figure = Figure(figsize=(5.6, 4.8))
    axes = figure.subplots()
    for k, name in enumerate(class_names):
        y, p = labels[observed[:, k], k], probabilities[observed[:, k], k]
        if not _defined(y):
            continue
        fpr, tpr, _ = roc_curve(y, p)
        axes.plot(fpr, tpr, color=COLOURS[k % 10], lw=1.6, label=_interval_label(name, (aurocs or {}).get(name)))
    axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    axes.set(
        xlabel="False positive rate (1 − specificity)",
        ylabel="True positive rate (sensitivity)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC curves",
    )
    axes.legend(loc="lower right")
    return figure


@_report_style
def pr_curves_figure(
    probabilities: np.ndarray, labels: np.ndarray, observed: np.ndarray, class_names: Sequence[str]
) -> Figure:
    """One precision-recall curve per class (legend: average precision, and the prevalence a random model scores)."""
    figure = Figure(figsize=(5.6, 4.8))
    axes = figure.subplots()
    for k, name in enumerate(class_names):
        y, p = labels[observed[:, k], k], probabilities[observed[:, k], k]
        if not _defined(y):
            continue
        precision, recall, _ = precision_recall_curve(y, p)
        label = f"{name}: AP {average_precision_score(y, p):.3f} (prevalence {y.mean():.2f})"
        axes.step(recall, precision, where="post", color=COLOURS[k % 10], lw=1.6, label=label)
    axes.set(
        xlabel="Recall (sensitivity)",
        ylabel="Precision (PPV)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Precision-recall curves",
    )
    axes.legend(loc="upper right")
    return figure


@_report_style
def reliability_figure(
    probabilities: np.ndarray,
    labels: np.ndarray,
    observed: np.ndarray,
    num_bins: int,
    ece: float,
    title: str = "Reliability diagram",
) -> Figure:
    """Reliability diagram of every observed (image, class) entry pooled, with the entry count per bin below.

    The bins are the ECE's: ``num_bins`` equal-width bins over [0, 1], a probability of exactly 1 in the last one.
    Each bar is the observed positive rate of its bin, drawn at the bin's mean predicted probability; the gap to
    the diagonal, weighted by the bin's share of entries, sums to the ECE given in the title.
    """
    p, y = probabilities[observed], labels[observed]
    bins = np.minimum((p * num_bins).astype(int), num_bins - 1)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    figure = Figure(figsize=(5.6, 5.4))
    (top, bottom) = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    counts = np.bincount(bins, minlength=num_bins)
    filled = counts > 0
    mean_probability = np.bincount(bins, weights=p, minlength=num_bins)[filled] / counts[filled]
    positive_rate = np.bincount(bins, weights=y, minlength=num_bins)[filled] / counts[filled]
    width = 1.0 / num_bins
    top.bar(
        edges[:-1][filled],
        positive_rate,
        width=width,
        align="edge",
        color=COLOURS[0],
        alpha=0.75,
        edgecolor="white",
        label="observed positive rate",
    )
    top.plot(mean_probability, positive_rate, "o", color="black", ms=3.5, label="bin mean probability")
    top.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    top.set(ylabel="Observed positive rate", ylim=(0, 1.01), title=f"{title} (ECE {ece:.3f})")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], counts, width=width, align="edge", color="grey", edgecolor="white")
    bottom.set(xlabel="Predicted probability", ylabel="Entries", xlim=(0, 1))
    return figure


@_report_style
def uncertainty_figure(
    stds: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    observed: np.ndarray,
    error_auroc: BootstrapInterval | None = None,
) -> Figure:
    """Monte Carlo standard deviation against the error of every observed (image, class) entry.

    Left: the std against the absolute error ``|p - y|``, wrong decisions at 0.5 in red. Right: the std of right
    and wrong decisions side by side; the title gives how well the std alone ranks wrong above right decisions
    (AUROC, 0.5 = no better than chance).
    """
    s, p, y = stds[observed], probabilities[observed], labels[observed]
    wrong = (p >= 0.5) != (y > 0.5)
    figure = Figure(figsize=(10.5, 4.2))
    (left, right) = figure.subplots(1, 2, width_ratios=[1.6, 1])
    left.scatter(s[~wrong], np.abs(p - y)[~wrong], s=9, alpha=0.5, color=COLOURS[0], label="right at 0.5")
    left.scatter(s[wrong], np.abs(p - y)[wrong], s=12, alpha=0.7, color=COLOURS[3], label="wrong at 0.5")
    left.set(
        xlabel="Monte Carlo std of the probability",
        ylabel="|probability − label|",
        ylim=(0, 1.01),
        title="Uncertainty against error",
    )
    left.legend(loc="lower right")
    groups = [s[~wrong], s[wrong]]
    right.boxplot(
        groups, tick_labels=[f"right (n={len(groups[0])})", f"wrong (n={len(groups[1])})"], widths=0.5, showfliers=False
    )
    for position, (values, colour) in enumerate(zip(groups, (COLOURS[0], COLOURS[3])), start=1):
        jitter = np.random.default_rng(position).uniform(-0.12, 0.12, len(values))
        right.scatter(position + jitter, values, s=6, alpha=0.35, color=colour)
    title = "Std of right and wrong decisions"
    if error_auroc is not None and math.isfinite(error_auroc.estimate):
        title += f"\nstd ranks errors: AUROC {error_auroc.format()}"
    right.set(ylabel="Monte Carlo std", title=title)
    return figure


@dataclass
class ImagePanel:
    """One radiograph panel of a figure.

    Attributes:
        image: ``(h, w)`` intensities in [0, 1], rows top to bottom, possibly downsampled from the original.
        size: ``(W, H)`` the original image size: the marks below are in original pixels.
        title: the caption above the panel.
        probability_map: ``(h', w')`` map in [0, 1] over the same extent, or ``None``.
        boxes: ground-truth boxes ``(M, 4)`` ``[x1, y1, x2, y2]`` in pixels.
        points: ground-truth points ``(M, 2)`` ``[x, y]``.
        point_radius: hit radius drawn around each point.
        detections: ``(M, 3)`` ``[x, y, score]``, drawn as crosses with their score.
        frame_colour: panel border colour (e.g. red for an error), or ``None``.
    """

    image: np.ndarray
    size: tuple[int, int]
    title: str
    probability_map: np.ndarray | None = None
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    point_radius: float = 0.0
    detections: np.ndarray | None = None
    frame_colour: str | None = None


def _draw_panel(axes, panel: ImagePanel, map_top: float = 1.0):
    """Draw ``panel`` on ``axes``; the map's colours span ``[0, map_top]``. Returns the map's image, if any."""
    width, height = panel.size
    extent = (0, width, height, 0)
    axes.imshow(panel.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="lanczos", extent=extent)
    drawn_map = None
    if panel.probability_map is not None:
        shown = np.ma.masked_less(panel.probability_map, MAP_VISIBLE_FRACTION * map_top)
        drawn_map = axes.imshow(
            shown, cmap="turbo", vmin=0.0, vmax=map_top, alpha=0.5, interpolation="bilinear", extent=extent
        )
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    for x1, y1, x2, y2 in [] if panel.boxes is None else panel.boxes:
        axes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.4, ec=GROUND_TRUTH_COLOUR))
    for x, y in [] if panel.points is None else panel.points:
        axes.add_patch(Circle((x, y), panel.point_radius, fill=False, lw=1.0, ls="--", ec=GROUND_TRUTH_COLOUR))
    if panel.detections is not None and len(panel.detections):
        axes.scatter(panel.detections[:, 0], panel.detections[:, 1], marker="x", s=28, lw=1.4, color=DETECTION_COLOUR)
        for x, y, score in panel.detections[:3]:
            axes.annotate(
                f"{score:.2f}", (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6.5, color=DETECTION_COLOUR
            )
    axes.set_title(panel.title, fontsize=7.5, fontweight="normal")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.grid(False)
    for spine in axes.spines.values():
        spine.set_visible(panel.frame_colour is not None)
        if panel.frame_colour is not None:
            spine.set_edgecolor(panel.frame_colour)
            spine.set_linewidth(2.0)
    return drawn_map


@_report_style
def thumbnails_figure(panels: Sequence[ImagePanel], columns: int = 4, title: str | None = None) -> Figure:
    """A grid of radiograph panels, ``columns`` per row."""
    rows = max(1, math.ceil(len(panels) / columns))
    figure = Figure(figsize=(2.7 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, panel in zip(axes.flat, panels):
        _draw_panel(axis, panel)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title, fontweight="bold")
    figure.tight_layout(h_pad=1.2)
    return figure


@_report_style
def overlay_figure(rows: Mapping[str, Sequence[ImagePanel]], columns: int) -> Figure:
    """Radiograph panels in labelled rows (``{"Best": [...], "Worst": [...]}``), with the legend of the marks.

    The probability maps share one colour scale, from 0 to the highest map value shown (at least 0.1), given by the
    colour bar; a weak model's maps stay visible without being mistaken for confident ones.
    """
    maps = [p.probability_map for panels in rows.values() for p in panels if p.probability_map is not None]
    map_top = max([0.1, *[float(m.max()) for m in maps]])
    figure = Figure(figsize=(3.1 * columns, 3.7 * len(rows)))
    axes = figure.subplots(len(rows), columns, squeeze=False)
    drawn_map = None
    for row_axes, (label, panels) in zip(axes, rows.items()):
        for axis, panel in zip(row_axes, panels):
            drawn_map = _draw_panel(axis, panel, map_top) or drawn_map
        for axis in row_axes[len(panels) :]:
            axis.set_visible(False)
        row_axes[0].set_ylabel(label, fontsize=10, fontweight="bold")
    handles = [
        Rectangle((0, 0), 1, 1, fill=False, ec=GROUND_TRUTH_COLOUR, lw=1.4, label="ground-truth box"),
        Line2D(
            [],
            [],
            marker="o",
            ms=9,
            ls="",
            mfc="none",
            mec=GROUND_TRUTH_COLOUR,
            label="ground-truth point (hit radius)",
        ),
        Line2D([], [], marker="x", ls="", color=DETECTION_COLOUR, label="detection (score)"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=3, bbox_to_anchor=(0.45, -0.01))
    figure.tight_layout(rect=(0, 0.04, 0.93, 1), h_pad=1.5)
    if drawn_map is not None:
        colour_bar = figure.colorbar(drawn_map, cax=figure.add_axes((0.945, 0.25, 0.012, 0.5)))
        colour_bar.set_label("probability (map)")
    return figure


@_report_style
def froc_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    fp_per_image: Sequence[float],
    sensitivity_at: Mapping[str, Mapping[float, BootstrapInterval]],
) -> Figure:
    """FROC curve of each fracture type (log FP-per-image axis) with the sensitivity and its interval at each
    operating point of the FROC score."""
    figure = Figure(figsize=(6.4, 4.6))
    axes = figure.subplots()
    for k, (name, (fps, sensitivity)) in enumerate(curves.items()):
        if not len(fps):
            continue
        order = np.argsort(fps, kind="stable")
        colour = COLOURS[k % 10]
        axes.step(np.maximum(fps[order], 1e-3), sensitivity[order], where="post", color=colour, lw=1.5, label=name)
        points = sensitivity_at.get(name, {})
        rates = [r for r in fp_per_image if math.isfinite(points[r].estimate)] if points else []
        if rates:
            estimates = np.array([points[r].estimate for r in rates])
            errors = np.abs(np.array([[points[r].low, points[r].high] for r in rates]).T - estimates)
            axes.errorbar(rates, estimates, yerr=errors, fmt="o", color=colour, ms=4, capsize=3, lw=1)
    for rate in fp_per_image:
        axes.axvline(rate, color="grey", lw=0.5, ls=":")
    axes.set_xscale("log")
    axes.set(
        xlabel="False positives per image",
        ylabel="Sensitivity (lesions found)",
        ylim=(0, 1.02),
        xlim=(min(fp_per_image) / 2, max(fp_per_image) * 2),
        title="FROC curves (dots: operating points, 95% CI)",
    )
    axes.legend(loc="upper left")
    return figure


@_report_style
def auroc_difference_figure(differences: Mapping[str, BootstrapInterval], model: str, reference: str) -> Figure:
    """Forest plot of ``model − reference`` per statistic with paired intervals; 0 (no difference) is marked."""
    names = list(differences)
    figure = Figure(figsize=(6.4, 0.42 * len(names) + 1.3))
    axes = figure.subplots()
    for row, name in enumerate(names):
        interval = differences[name]
        if not math.isfinite(interval.estimate):
            continue
        colour = COLOURS[2] if interval.low > 0 else COLOURS[3] if interval.high < 0 else "black"
        axes.errorbar(
            interval.estimate,
            row,
            xerr=[[interval.estimate - interval.low], [interval.high - interval.estimate]],
            fmt="o",
            color=colour,
            capsize=3,
            ms=5,
        )
    axes.axvline(0.0, color="grey", lw=0.9, ls="--")
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set(xlabel=f"{model} − {reference} (paired bootstrap 95% CI)", title="Paired differences")
    return figure


@_report_style
def training_curve_figure(
    series: Mapping[str, Sequence[tuple[int, float]]], title: str, ylabel: str, percent: bool = False
) -> Figure:
    """Epoch-level curves (``{name: [(epoch, value), ...]}``), one line each; ``percent`` labels shares as %."""
    figure = Figure(figsize=(6.4, 3.8))
    axes = figure.subplots()
    for k, (name, values) in enumerate(series.items()):
        if values:
            epochs, numbers = zip(*values)
            axes.plot(epochs, numbers, "o-", color=COLOURS[k % 10], ms=3.5, lw=1.4, label=name)
    axes.set(xlabel="Epoch", ylabel=ylabel, title=title)
    axes.xaxis.get_major_locator().set_params(integer=True)
    if percent:
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.legend(loc="best")
    return figure
