"""report.html: one self-contained page (inline CSS, embedded images, inline SVG, no script, no network).

The page is written by the Jinja2 templates in ``reports/templates/`` (package data, read through
the package), with autoescape on: every text from the document is escaped where it is printed.
Numbers are formatted by the filters of :mod:`reports.fmt`; figures are SVG markup from
:mod:`reports.figures`.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from reports.text import printable
from markupsafe import Markup

from reports import fmt, glossary, limits, sections
from reports.document import Accuracy, DataProvenance, Document, Forget, Machine, Method, ModelProvenance
from reports.images import Embedded, embed


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return resources.files("reports").joinpath("static/report.css").read_text(encoding="utf-8")


def _shown(value):
    """Every printed text (titles, names, notes) with control and direction characters escaped;
    markup the templates built themselves (figures) is theirs and left as it is."""
    from markupsafe import Markup

    return value if isinstance(value, Markup) or not isinstance(value, str) else printable(value)


#: Requests whose figures a report draws, at most: the first ones in the report's order (those that
#: did not pass first). Each request costs a few matplotlib figures (about 0.2 s each); a document of
#: 300 requests took minutes to render. The others keep every number and say their figures are left out.
MAX_FIGURE_TARGETS = 25

#: ids of the targets, tests' per-example pictures and membership lists whose figures this render draws
#: (None: all); set by :func:`render_html` for the duration of one render.
_DRAWN: ContextVar[frozenset[int] | None] = ContextVar("drawn", default=None)


def figures_drawn(part) -> bool:
    """Whether this render draws the figures of ``part`` (a target or one of its parts)."""
    drawn = _DRAWN.get()
    return drawn is None or id(part) in drawn


def _only_drawn(draw, empty=""):
    """``draw(part, salt)`` for the parts this render draws, else ``empty`` (no figure)."""
    def wrapped(part, *args, **kwargs):
        return draw(part, *args, **kwargs) if figures_drawn(part) else empty
    return wrapped


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates' environment: autoescape on, and an undefined name is an error, not an empty string."""
    from reports.figures import per_example_svg  # matplotlib loads only when a report is drawn

    env = Environment(loader=PackageLoader("reports", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      finalize=_shown)
    from reports.figures import residual_svg

    env.filters.update(pct=fmt.pct, num=fmt.num, pval=fmt.pval, seconds=fmt.seconds, size=fmt.size,
                       interval=fmt.interval, thousands=fmt.count, plain=fmt.plain, roles=sections.roles,
                       basename=lambda path: Path(path).name, outcome=fmt.outcome_word, gate_rule=fmt.gate_rule,
                       bound=fmt.bound)
    env.tests["did_not_pass"] = fmt.did_not_pass
    env.globals.update(DASH=fmt.DASH, ROLES=sections.ROLES, ROLE_NAMES=sections.ROLE_NAMES,
                       SHORT_NAMES=sections.SHORT_NAMES, anchor=fmt.anchor, status=fmt.status,
                       certainty=fmt.certainty, STRONG_P=fmt.STRONG_P, GLOSSARY=glossary.TERMS,
                       most_exposed=sections.most_exposed, residual_svg=_only_drawn(residual_svg),
                       roc_figures=_only_drawn(sections.roc_figures, ()), per_example_svg=_only_drawn(per_example_svg),
                       figures_drawn=figures_drawn,
                       # empty parts, for a target or run that lacks one (a step failed before it)
                       Accuracy=Accuracy, Forget=Forget, Method=Method)
    return env


def render_html(doc: Document, base_dir: str | Path) -> str:
    """The report as one HTML string; ``base_dir`` is the folder holding results.json (images are relative to it)."""
    if not isinstance(doc, Document):
        raise TypeError(f"render_html takes a reports.document.Document, not {type(doc).__name__}; "
                        "read results.json with reports.load_results or reports.validate")
    base_dir = Path(base_dir)
    ordered = fmt.target_order(doc.targets)  # failures first, in the contents, the summary and the sections
    data = doc.provenance.data or DataProvenance()

    def embed_image(relative: str) -> Embedded:
        return embed(relative, base_dir)

    page = environment().get_template("report.html")
    drawn = [target for _, target in ordered[:MAX_FIGURE_TARGETS]]
    token = _DRAWN.set(None if len(ordered) <= MAX_FIGURE_TARGETS else frozenset(
        id(part) for target in drawn for part in (target, target.per_example, target.membership)))
    try:
        return _render(page, doc, ordered, data, embed_image)
    finally:
        _DRAWN.reset(token)


def _render(page, doc: Document, ordered, data: DataProvenance, embed_image) -> str:
    return page.render(max_figure_targets=MAX_FIGURE_TARGETS,
        doc=doc, targets=doc.targets, ordered=ordered,
        names=", ".join(target.name for _, target in ordered) or "no targets",
        stylesheet=Markup(stylesheet()),  # our own CSS, shipped with the package
        model=doc.provenance.model or ModelProvenance(), data=data, machine=doc.provenance.machine or Machine(),
        # class index -> name, where the name says more than the index ("three" for 3, not "3" for 3)
        class_labels={i: name for i, name in enumerate(data.class_names or []) if str(name) != str(i)},
        run_state=fmt.run_state(doc.targets, doc.verdict),
        all_given=bool(doc.targets) and all(t.method is not None and t.method.name == "given" for t in doc.targets),
        any_given=any(t.method is not None and t.method.name == "given" for t in doc.targets),
        attacks_assumed=limits.attacks_assumed(doc), inversion_ran=limits.inversion_ran(doc),
        yardsticks=limits.yardsticks,
        shadow_models=limits.shadow_models(doc), embed=embed_image)
