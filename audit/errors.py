"""Errors the CLI turns into one clear line and a documented exit code.

Exit codes (README, "Exit codes"): 0 all gates pass; 1 a gate failed; 2 bad usage or
input; 3 an attack or a step failed; 130 interrupted by SIGINT, 143 by SIGTERM (128 plus
the signal's number, as shells report a process killed by it).
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


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; the CLI raises this from its signal handler.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` clauses that
    record a failed step let it through, while the ``except BaseException`` clean-ups of
    staged files (``audit.atomic``, the update log writer, reports) still run.
    """

    def __init__(self, signum: int):
        import signal

        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def closest(value: object, choices: "list[str] | tuple[str, ...]", cutoff: float = 0.6) -> str | None:
    """The choice nearest ``value`` when one is near enough to be what was meant, else None."""
    import difflib

    close = difflib.get_close_matches(str(value).strip().lower(), [str(c) for c in choices], n=1, cutoff=cutoff)
    return close[0] if close else None


def unknown_choice(flag: str, value: object, choices: "list[str] | tuple[str, ...]", default: str | None = None
                   ) -> InputError:
    """The one message for a value that is not one of ``choices``: what was given, the closest
    choice when one is near ("did you mean"), and every choice."""
    text = str(value)
    near = closest(text, choices)
    hint = f"; did you mean {near}?" if near else ""
    listed = ", ".join(f"{c} (the default)" if c == default else str(c) for c in choices)
    return InputError(f"{flag} {text!r} is unknown{hint} Use one of: {listed}" if hint else
                      f"{flag} {text!r} is unknown; use one of: {listed}")
