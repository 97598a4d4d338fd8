"""amnesia-audit: the harness that unlearns, attacks, scores and reports.

``audit.run(model, forget=[...], **options)`` is the Python API of ``audit run`` (files);
``audit.evaluate(model, train=..., held_out=..., forget=..., ...)`` the same audit on
models and tensors in memory, with the user's own model factory and training function.
"""

__version__ = "0.1.0"


def run(model, forget, **options):
    """Audit ``model`` for each forget spec; returns :class:`audit.harness.AuditResult`.

    Options are the flat names of :class:`audit.options.AuditOptions` (method, reference, attacks,
    mia_attacks, reference_models, data, data_root, out, seed, fail_on, ...).
    """
    from audit.harness import run as _run

    return _run(model, forget, **options)


def evaluate(original, **kwargs):
    """Audit an in-memory model; see :func:`audit.in_memory.evaluate`."""
    from audit.in_memory import evaluate as _evaluate

    return _evaluate(original, **kwargs)
