"""What the Method and limits section says about the whole run: the attacks that ran, what each
assumes, and whether reference (shadow) models were trained for them."""

from __future__ import annotations

from reports.document import Document, MembershipResult

# Documents written before MembershipResult.needs_reference existed do not say which attacks
# trained reference models; these are the ones that did then (attacks/registry.py, the attacks
# with needs_reference=True). Read only for such documents; newer ones carry the field.
NEEDS_REFERENCE_BEFORE_THE_FIELD = frozenset({"lira_online", "lira_offline", "rmia", "rmia_offline", "shadow"})


def needs_reference(result: MembershipResult) -> bool:
    """Whether this attack trained reference models."""
    if result.needs_reference is not None:
        return result.needs_reference
    return result.attack in NEEDS_REFERENCE_BEFORE_THE_FIELD


def attacks_assumed(doc: Document) -> list[tuple[str, str | None]]:
    """(label, what it assumes) of each membership attack that ran, once each, in order of first appearance."""
    seen: dict[str, tuple[str, str | None]] = {}
    for target in doc.targets:
        for result in target.membership:
            seen.setdefault(result.attack, (result.label or result.attack, result.assumes))
    return list(seen.values())


def inversion_ran(doc: Document) -> bool:
    return any(target.inversion for target in doc.targets)


def shadow_models(doc: Document) -> int | None:
    """How many reference models the attacks that need them trained; None when no such attack ran."""
    ran = any(needs_reference(result) for target in doc.targets for result in target.membership)
    return doc.config.reference_models if ran else None


def yardsticks(doc: Document) -> dict[str, list[str]]:
    """What each request's membership evidence was judged against ("retrained", "pool" or "permutation"),
    with the names of the requests, in the order first seen. ``config.reference`` alone does not say it:
    its default, "auto", retrains for a class and uses the shared pool for individual examples. A target
    whose evidence does not record it counts as retrained when it has retrained models; a document that
    records it for no target falls back to the configured reference."""
    found: dict[str, list[str]] = {}
    for target in doc.targets:
        null = next((test.inputs.null if test.inputs is not None and test.inputs.null else test.detail.get("null")
                     for test in target.tests if test.name == "membership"), None)
        if null not in ("retrained", "pool", "permutation"):
            null = "retrained" if target.retrains else None
        if null is not None:
            found.setdefault(null, []).append(target.name)
    if not found and doc.targets:
        found["retrained" if doc.config.reference == "retrain" else "permutation"] = [t.name for t in doc.targets]
    return found
