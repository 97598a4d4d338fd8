"""amnesia-audit: the harness that unlearns, attacks, scores and reports."""

__version__ = "0.1.0"
