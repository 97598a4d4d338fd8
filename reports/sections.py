"""What the per-target templates need beyond the document's text: which models a result covers, and
the ROC figures of its membership attacks."""

from __future__ import annotations

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
