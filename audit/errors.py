"""Errors the CLI turns into one clear line and a documented exit code.

Exit codes (README, "Exit codes"): 0 all gates pass; 1 a gate failed; 2 bad usage or
input; 3 an attack or a step failed.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = 3


class InputError(AuditError):
    """Bad usage or input: a file, a spec, an option. Exit code 2."""

    exit_code = 2


class StepError(AuditError):
    """An attack, an unlearning step or training failed. Exit code 3."""

    exit_code = 3
