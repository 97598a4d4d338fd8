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
ROLE_STYLE = {
    "original": {"color": "#c0392b", "linestyle": "-", "label": "original"},
    "unlearned": {"color": "#1f5fa8", "linestyle": "--", "label": "unlearned"},
    "reference": {"color": "#2e7d32", "linestyle": ":", "label": "retrained reference"},
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
            ax.plot(fpr, tpr, linewidth=1.5, **style)
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
                         "font.size": 8.5, "axes.titlesize": 9.5, "axes.linewidth": 0.6}):
        fig, ax = plt.subplots(figsize=(5.2, 2.9), dpi=100)
        for key, values in series.items():
            style = PER_EXAMPLE_STYLE[key]
            ax.hist(np.clip(values, low, high), bins=bins, density=True, histtype="step", linewidth=1.5,
                    color=style["color"], label=f"{style['label']} (n={values.size})",
                    linestyle=":" if key == "held_out_original" else "-")
        ax.axvline(0.0, color="#444444", linewidth=0.6)
        ax.set_xlabel("per-example statistic (higher: more like a training member)")
        ax.set_ylabel("density")
        ax.set_title("Forget examples under each model")
        ax.legend(loc="upper right", fontsize=7.0, frameon=False)
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.17, top=0.9)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    return _inline(buffer.getvalue())
