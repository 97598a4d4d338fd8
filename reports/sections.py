"""What the per-target templates need beyond the document's text: which models a result covers, and
the ROC figures of its membership attacks."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from reports.document import MembershipResult

ROLE_NAMES = {"original": "original model", "unlearned": "unlearned model", "reference": "retrained reference"}
SHORT_NAMES = {"original": "original", "unlearned": "unlearned", "reference": "retrained"}  # narrow table cells
ROLES = tuple(ROLE_NAMES)


def roles(part: object) -> list[str]:
    """The roles ("original", "unlearned", "reference") that ``part`` (accuracies, an attack, an inversion) has figures for."""
    return [role for role in ROLES if getattr(part, role, None) is not None]


def roc_figures(attacks: list[MembershipResult], salt: str) -> list[tuple[str, Markup]]:
    """(attack label, inline SVG) for each attack with at least one ROC curve; ``salt`` keeps the SVG ids unique."""
    from reports.figures import roc_svg  # matplotlib loads only when a report is drawn, not on `import reports`

    figures = []
    for i, attack in enumerate(attacks):
        curves = {role: getattr(attack, role).roc if getattr(attack, role) else None for role in ROLES}
        if any(curves.values()):
            label = attack.label or attack.attack
            figures.append((label, roc_svg(curves, label, f"{salt}-{i}")))
    return figures


@dataclass(frozen=True)
class Exposed:
    """One forget example's per-example statistic under each model; ``excess``: unlearned minus retrained."""

    id: int
    original: float
    unlearned: float
    retrained: float
    excess: float


def most_exposed(per_example: dict[str, list[float]], count: int = 5) -> list[Exposed]:
    """The ``count`` forget examples whose statistic under the unlearned model exceeds their retrained
    models' mean the most; empty when the document does not record the examples' ids ("forget_ids").

    "retrained" holds the retrained models' statistics model after model, each over the forget
    examples in the order of "forget_ids" (audit.evidence.per_example_picture).
    """
    ids = per_example.get("forget_ids") or []
    original, unlearned = per_example.get("original") or [], per_example.get("unlearned") or []
    retrained = per_example.get("retrained") or []
    n = len(ids)
    if not n or len(original) != n or len(unlearned) != n or not retrained or len(retrained) % n:
        return []
    models = len(retrained) // n
    rows = []
    for k, example in enumerate(ids):
        mean = sum(retrained[m * n + k] for m in range(models)) / models
        rows.append(Exposed(int(example), original[k], unlearned[k], mean, unlearned[k] - mean))
    return sorted(rows, key=lambda row: -row.excess)[:count]
