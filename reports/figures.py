"""ROC curves as inline SVG, drawn with matplotlib (vector in the HTML and, through WeasyPrint, in the PDF).

The figures are markup generated from numbers; the only text from the document (an
attack's label in a title) is escaped by matplotlib's SVG writer, so each figure is
returned as :class:`markupsafe.Markup`, ready for the templates to insert.
"""

from __future__ import annotations

import io
import re

import matplotlib
from markupsafe import Markup

from reports.document import Roc

matplotlib.use("Agg")  # no display: reports are rendered on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

# One colour and line style per model, readable in greyscale print and by colour-blind readers.
# The retrained reference is drawn first, wide and pale, so that the unlearned model's line, drawn over it,
# stays visible where the two coincide (as they should after a good unlearning).
ROLE_STYLE = {
    "reference": {"color": "#2e7d32", "linestyle": "-", "label": "retrained reference", "linewidth": 4.0,
                  "alpha": 0.45},
    "original": {"color": "#c0392b", "linestyle": "-", "label": "original", "linewidth": 1.5},
    "unlearned": {"color": "#1f5fa8", "linestyle": "--", "label": "unlearned", "linewidth": 1.6},
}
MIN_FPR = 1e-4


def roc_svg(curves: dict[str, Roc | None], title: str, salt: str) -> Markup:
    """An ``<svg>`` element with the ROC curves of one attack on log-log axes.

    ``curves`` maps "original", "unlearned", "reference" to a :class:`~reports.document.Roc`
    or None. Log axes show the low-FPR regime where membership inference matters
    (Carlini et al. 2022, "Membership Inference Attacks From First Principles", Fig. 1).
    ``salt`` makes the SVG's internal ids unique when several figures share one page.
    """
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.family": "DejaVu Sans",
                         "font.size": 8.5, "axes.titlesize": 9.5, "axes.linewidth": 0.6}):
        fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=100)
        lowest = 1.0
        for role, style in ROLE_STYLE.items():
            curve = curves.get(role)
            if not curve:
                continue
            points = [(f, t) for f, t in zip(curve.fpr, curve.tpr) if f > 0 and t > 0]
            if not points:
                continue
            fpr, tpr = zip(*points)
            lowest = min(lowest, min(fpr))
            ax.plot(fpr, tpr, **style)
        floor = max(MIN_FPR, min(lowest, 1e-3))
        ax.plot([floor, 1], [floor, 1], color="#888888", linewidth=0.8, linestyle="-.", label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1.05)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title.replace("$", r"\$"))  # no mathtext from document text
        ax.grid(True, which="major", linewidth=0.4, color="#dddddd")
        ax.legend(loc="lower right", fontsize=7.5, frameon=False)
        fig.subplots_adjust(left=0.17, right=0.95, bottom=0.14, top=0.91)  # fixed: tight_layout doubles the cost
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    return _inline(buffer.getvalue())


def _inline(svg: str) -> Markup:
    """Strip the XML prolog and DOCTYPE; let CSS size the figure (keep the viewBox)."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    head, rest = svg.split(">", 1)
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    return Markup(head + ' role="img" preserveAspectRatio="xMidYMid meet">' + rest)


PER_EXAMPLE_STYLE = {
    "original": {"color": "#c0392b", "label": "original"},
    "unlearned": {"color": "#1f5fa8", "label": "unlearned"},
    "retrained": {"color": "#2e7d32", "label": "retrained"},
    "held_out_original": {"color": "#888888", "label": "held-out, original"},
}


def per_example_svg(per_example: dict[str, list[float]], salt: str) -> Markup:
    """Step histograms of the per-example membership statistic of the forget examples under each model.

    A model that forgot the data puts the forget examples where the retrained models put
    them; one that did not puts them where the original does.
    """
    import numpy as np

    series = {k: np.asarray(v, dtype=float) for k, v in per_example.items() if k in PER_EXAMPLE_STYLE and v}
    if not series:
        return Markup("")
    everything = np.concatenate(list(series.values()))
    low, high = np.quantile(everything, [0.01, 0.99])
    if not high > low:
        low, high = low - 1.0, high + 1.0
    bins = np.linspace(low, high, 31)
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.family": "DejaVu Sans",
                         "font.size": 9.5, "axes.titlesize": 10.5, "axes.linewidth": 0.6}):
        fig, ax = plt.subplots(figsize=(7.6, 3.9), dpi=100)
        # Drawn in this order, each line a little wider than the next, so that none hides under another.
        order = [k for k in ("retrained", "held_out_original", "original", "unlearned") if k in series]
        for depth, key in enumerate(order):
            style, values = PER_EXAMPLE_STYLE[key], series[key]
            ax.hist(np.clip(values, low, high), bins=bins, density=True, histtype="step",
                    linewidth=3.2 - 0.5 * depth, alpha=0.55 if key == "retrained" else 1.0,
                    color=style["color"], label=f"{style['label']} (n={values.size})",
                    linestyle=":" if key == "held_out_original" else "--" if key == "unlearned" else "-")
        ax.axvline(0.0, color="#444444", linewidth=0.6)
        ax.set_xlabel("per-example statistic (higher: more like a training member)")
        ax.set_ylabel("density")
        ax.set_title("Forget examples under each model")
        # The legend goes below the axes, never over the bars.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(order), fontsize=8.5, frameon=False)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.25, top=0.92)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    return _inline(buffer.getvalue())


def residual_svg(target, salt: str) -> Markup:
    """The residual leakage, its 95% interval and its one-sided 95% upper bound drawn against the margin
    a pass needs (``max_residual``): one horizontal axis, the pass region shaded. An unbounded end is
    drawn to the axis' edge with an arrow. ``target`` is a :class:`reports.document.Target`."""
    import math

    residual = target.residual_leakage
    if residual is None:
        return Markup("")
    margin = target.max_residual if target.max_residual is not None else 0.5
    ci = target.residual_leakage_ci95 or [None, None]
    low = ci[0] if ci[0] is not None and math.isfinite(ci[0]) else residual
    high, upper = ci[1], target.residual_leakage_upper
    finite = [v for v in (residual, low, high, upper, margin, 1.0) if v is not None and math.isfinite(v)]
    right = min(max(finite) * 1.1, 3.0)
    open_high = high is None or not math.isfinite(high) or high > right
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.family": "DejaVu Sans",
                         "font.size": 9, "axes.linewidth": 0.6}):
        fig, ax = plt.subplots(figsize=(7.6, 1.35), dpi=100)
        ax.axvspan(0, margin, color="#e7f5ea", zorder=0)
        ax.axvline(margin, color="#1e7b34", linestyle="--", linewidth=1.2)
        ax.text(margin / 2, 0.93, "pass region", ha="center", va="top", color="#1e7b34", fontsize=8.5,
                transform=ax.get_xaxis_transform())
        ax.axvline(1.0, color="#b42318", linewidth=0.8, linestyle=":")
        ax.text(min(1.0, right) , 0.93, " as much as before", ha="left" if right > 1.3 else "right", va="top",
                color="#b42318", fontsize=8, transform=ax.get_xaxis_transform())
        end = right if open_high else high
        ax.plot([max(low, 0.0), end], [0, 0], color="#1d2330", linewidth=4, solid_capstyle="butt")
        if open_high:
            ax.annotate("", xy=(right, 0), xytext=(right * 0.96, 0),
                        arrowprops={"arrowstyle": "->", "color": "#1d2330", "linewidth": 1.5})
        if upper is not None and math.isfinite(upper) and upper <= right:
            ax.plot([upper, upper], [-0.35, 0.35], color="#9a6700" if upper >= margin else "#1e7b34", linewidth=2.2)
        ax.plot([min(residual, right)], [0], "o", color="#1f5fa8", markersize=7, zorder=3)
        ax.set_xlim(0, right)
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        ax.set_xlabel("residual leakage (0: none left; 1: as much as before unlearning)")
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.38, top=0.97)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    return _inline(buffer.getvalue())
