"""What ``audit run`` takes, grouped: the model and data, the attacks, the verdict, the
execution and the outputs. The CLI, a config file and the Python API fill it with flat
names (``alpha=0.01``, ``retrains=8``) through :meth:`AuditOptions.from_flat`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from attacks.registry import ATTACKS as MIA_ATTACKS
from attacks.registry import DEFAULT_ATTACKS, DEFAULT_REFERENCE_MODELS, NEEDS_REFERENCE
from audit.errors import InputError, unknown_choice
from audit.gates import Gate, parse_gates
from audit.scoring import DEFAULT_ALPHA, DEFAULT_MAX_MEMORISED_AUC, DEFAULT_MAX_RESIDUAL
from reports.text import printable

METHODS = ("auto", "amnesiac", "relabel", "finetune", "retrain", "none")
INCONCLUSIVE = ("fail", "pass")
DEFAULT_RETRAINS = 3
#: What each model is compared with (README, "The verdict"): auto takes the pool for sample
#: requests and retrained models for class requests.
REFERENCES = ("auto", "pool", "retrain", "none")
ATTACK_FAMILIES = ("mia", "inversion")
FORMATS = ("html", "pdf", "junit")


# Bounds on every size a user names, checked before anything is allocated (exit 2, one line).
MAX_REFERENCE_MODELS = 1024
MAX_RETRAINS = 100
MAX_INVERSION_ITERATIONS = 100_000
MAX_CPUS_PER_MODEL = 1024
MAX_GPUS_PER_MODEL = 64


def _shown(value) -> str:
    """A value as the message shows it: numbers as they are, anything else by type and repr."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value}"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user's object whose repr fails is named by its type alone
        return type(value).__name__
    return f"{printable(' '.join(text.split())[:40])} ({type(value).__name__})"  # one line, control characters escaped


def check_whole(flag: str, value, low: int, high: int, why: str) -> int:
    """``value`` is a whole number in [low, high]: else one line naming the flag (CLI and Python API alike)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{flag} must be a whole number from {low} to {high} ({why}), not {_shown(value)}")
    return value


def check_number(flag: str, value, what: str, ok) -> float:
    """``value`` is a finite number for which ``ok`` holds: else one line naming the flag."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise InputError(f"{flag} must be a number {what}, not {_shown(value)}")
    return value


# The flags of flat names whose flag is not ``--`` + the name with dashes.
_FLAGS = {"mia_attacks": "--mia", "formats": "--format", "model": "the model"}


def flag_of(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _is_path(value) -> bool:
    import os

    return isinstance(value, (str, os.PathLike)) and "\x00" not in os.fspath(value)


def _names(name: str, value) -> list[str]:
    """A list of names as the CLI takes it: "mia,inversion" (one string, split at commas) or a list of strings."""
    if isinstance(value, str):
        # A gate expression holds no comma but --fail-on is given once per gate; a string is one gate.
        return [value] if name == "fail_on" else [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InputError(f"{flag_of(name)} must be a list of strings (or one string), not {_shown(value)}")


def check_types(fields: dict[str, str], options: dict) -> dict:
    """The Python API's values checked against the options' declared types, before anything else looks at
    them: one line naming the CLI's flag (the numbers' ranges are :meth:`AuditOptions.validate`'s)."""
    checked = {}
    for name, value in options.items():
        kind = fields[name].replace(" ", "")
        optional = kind.endswith("|None")
        base = kind.removesuffix("|None")
        if value is None and optional:
            checked[name] = None
            continue
        if base == "list[str]":
            value = _names(name, value)
        elif base == "list[str]|str":
            value = _names(name, value) if not isinstance(value, str) else value
        elif base == "str" and not isinstance(value, str):
            raise InputError(f"{flag_of(name)} must be a string, not {_shown(value)}")
        elif base == "Path" and not _is_path(value):
            raise InputError(f"{flag_of(name)} must be a path (a string or a pathlib.Path without NUL), "
                             f"not {_shown(value)}")
        elif base == "bool" and not isinstance(value, bool):
            raise InputError(f"{flag_of(name)} must be True or False, not {_shown(value)}")
        elif base in ("dict", "str|dict") and not isinstance(value, (dict, str) if "str" in base else dict):
            raise InputError(f"{flag_of(name)} must be a dict{' or a JSON string' if 'str' in base else ''}, "
                             f"not {_shown(value)}")
        elif value is None:
            raise InputError(f"{flag_of(name)} must be given a value, not None")
        checked[name] = value
    return checked


@dataclass
class ModelInputs:
    """The model (or, with ``original``, the model unlearned elsewhere), its code and its data."""

    model: Path
    original: Path | None = None
    arch: str | None = None
    arch_args: str | dict | None = None
    code_path: list[str] | str | None = None
    train: str | None = None
    normalize: str | None = None
    recipe: dict | None = None
    data: str | None = None
    data_root: str | None = None

    @property
    def code_paths(self) -> list[str]:
        return [self.code_path] if isinstance(self.code_path, str) else list(self.code_path or [])


@dataclass
class AttackOptions:
    attacks: list[str] = field(default_factory=lambda: list(ATTACK_FAMILIES))  # families: mia, inversion
    mia_attacks: list[str] = field(default_factory=lambda: list(DEFAULT_ATTACKS))
    reference_models: int = DEFAULT_REFERENCE_MODELS
    inversion_iterations: int = 400


@dataclass
class VerdictOptions:
    # auto: the shared pool for sample requests, retrained models for class requests; pool; retrain;
    # none: the permutation null alone
    reference: str = "auto"
    retrains: int = DEFAULT_RETRAINS
    alpha: float = DEFAULT_ALPHA
    max_residual: float = DEFAULT_MAX_RESIDUAL
    max_memorised_auc: float = DEFAULT_MAX_MEMORISED_AUC
    inconclusive: str = "fail"
    not_memorised: str = "pass"
    fail_on: list[str] = field(default_factory=list)


@dataclass
class ExecutionOptions:
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_model: float = 1.0
    gpus_per_model: float = 0.0
    cache_dir: Path | None = None
    show_progress: bool = True


@dataclass
class OutputOptions:
    out: Path | None = Path("audit-out")
    formats: list[str] = field(default_factory=lambda: ["html", "pdf"])
    command: str = ""
    sign_key_env: str | None = None  # environment variable holding the HMAC key (audit.signing)


GROUPS = {"inputs": ModelInputs, "attack": AttackOptions, "verdict": VerdictOptions, "execution": ExecutionOptions,
          "output": OutputOptions}


@dataclass
class AuditOptions:
    """Everything ``audit run`` takes. ``assumptions`` are filled in once the inputs are checked."""

    inputs: ModelInputs
    forget: list[str]
    method: str = "auto"
    seed: int = 0
    attack: AttackOptions = field(default_factory=AttackOptions)
    verdict: VerdictOptions = field(default_factory=VerdictOptions)
    execution: ExecutionOptions = field(default_factory=ExecutionOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    assumptions: list[str] = field(default_factory=list)

    @classmethod
    def names(cls) -> set[str]:
        """The flat option names :meth:`from_flat` takes as keywords (besides ``model`` and ``forget``)."""
        return {"method", "seed"} | {f.name for group in GROUPS.values() for f in dataclasses.fields(group)} - {"model"}

    @classmethod
    def from_flat(cls, model, forget: list[str] | str, /, **options) -> "AuditOptions":
        """Options from flat names, as ``audit.run`` and the CLI take them; unknown names are bad input."""
        parts: dict[str, dict] = {name: {} for name in GROUPS}
        top = {}
        if not _is_path(model):
            raise InputError(f"the model must be a model file's path (a string or a pathlib.Path), not {_shown(model)}"
                             "; for a model in memory use audit.evaluate")
        if not isinstance(forget, str) and not (isinstance(forget, (list, tuple))
                                                and all(isinstance(f, str) for f in forget)):
            raise InputError(f"forget must be a spec such as \"class=3\" or a list of specs, not {_shown(forget)}; "
                             "ids go in a file (samples=PATH), or use audit.evaluate for ids in memory")
        fields = {f.name: str(f.type) for kind in (*GROUPS.values(), cls) for f in dataclasses.fields(kind)}
        unknown = sorted(set(options) - cls.names())
        if unknown:
            raise InputError(f"unknown option {unknown[0]!r}; known: {', '.join(sorted(cls.names()))}")
        options = check_types(fields, options)
        for name, value in options.items():
            group = next((g for g, kind in GROUPS.items() if name in {f.name for f in dataclasses.fields(kind)}
                          and name != "model"), None)
            if group is not None:
                parts[group][name] = value
            elif name in ("method", "seed"):
                top[name] = value
            else:
                raise InputError(f"unknown option {name!r}; known: {', '.join(sorted(cls.names()))}")
        inputs = ModelInputs(model=Path(model), **parts.pop("inputs"))
        if inputs.original is not None:
            inputs.original = Path(inputs.original)
        output = OutputOptions(**parts.pop("output"))
        output.out = Path(output.out) if output.out is not None else None
        return cls(inputs=inputs, forget=[forget] if isinstance(forget, str) else list(forget), **top, output=output,
                   **{name: GROUPS[name](**values) for name, values in parts.items()})

    def quiet(self) -> "AuditOptions":
        """A copy that draws no progress bars (tasks on workers)."""
        return dataclasses.replace(self, execution=dataclasses.replace(self.execution, show_progress=False))

    def validate(self) -> list[Gate]:
        """Check every option; return the parsed ``--fail-on`` gates. Bad values are :class:`InputError`."""
        a, v, out = self.attack, self.verdict, self.output.out
        if not self.forget:
            raise InputError("nothing to forget: pass at least one --forget SPEC (e.g. --forget class=3)")
        if len(set(self.forget)) != len(self.forget):
            twice = next(f for f in self.forget if self.forget.count(f) > 1)
            raise InputError(f"--forget {twice} is given twice; each target once")
        check_whole("--reference-models", a.reference_models, 1, MAX_REFERENCE_MODELS,
                    "reference models trained on subsets of the data")
        check_whole("--retrains", v.retrains, 1, MAX_RETRAINS,
                    "the retrained models measure model-to-model spread")
        check_whole("--inversion-iterations", a.inversion_iterations, 1, MAX_INVERSION_ITERATIONS,
                    "gradient steps of each inversion")
        check_number("--alpha", v.alpha, "strictly between 0 and 1 (a significance level such as 0.05)",
                     lambda x: 0 < x < 1)
        check_number("--max-residual", v.max_residual, "in (0, 1] (the share of the original's membership signal a "
                     "pass may leave, at 95% confidence, such as 0.5)", lambda x: 0 < x <= 1)
        check_number("--cpus-per-model", self.execution.cpus_per_model,
                     f"above 0 and at most {MAX_CPUS_PER_MODEL} (torch threads of each model the audit trains)",
                     lambda x: 0 < x <= MAX_CPUS_PER_MODEL)
        check_number("--gpus-per-model", self.execution.gpus_per_model,
                     f"from 0 to {MAX_GPUS_PER_MODEL} (GPUs of each training task)",
                     lambda x: 0 <= x <= MAX_GPUS_PER_MODEL)
        if self.output.sign_key_env is not None:
            from audit.signing import signing_key

            signing_key(self.output.sign_key_env)  # a missing key is said now, before any work
        if self.execution.executor not in ("local", "ray"):
            raise unknown_choice("--executor", self.execution.executor, ("local", "ray"), "local")
        if self.execution.executor == "ray":
            import importlib.util

            from audit.executor import RAY_MISSING

            if importlib.util.find_spec("ray") is None:  # said before any model or data is read
                raise InputError(RAY_MISSING)
        if v.inconclusive not in INCONCLUSIVE:
            raise unknown_choice("--inconclusive", v.inconclusive, INCONCLUSIVE, "fail")
        if v.not_memorised not in INCONCLUSIVE:
            raise unknown_choice("--not-memorised", v.not_memorised, ("pass", "fail"), "pass")
        if (isinstance(v.max_memorised_auc, bool) or not isinstance(v.max_memorised_auc, (int, float))
                or not 0.5 < v.max_memorised_auc < 1):
            raise InputError(f"--max-memorised-auc must lie strictly between 0.5 and 1 (the highest membership AUC "
                             f"of the original, at 95% confidence, that counts as not memorised, such as 0.6), "
                             f"not {v.max_memorised_auc}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise InputError(f"--seed must be a whole number from 0 to {2**32 - 1}, not {self.seed}")
        if self.inputs.original is not None and self.method != "auto":  # one rule for every method, none included
            raise InputError("--original audits a model unlearned elsewhere, so no unlearning runs and --method "
                             f"does not apply; drop --method {self.method}")
        if self.method not in METHODS:
            raise unknown_choice("--method", self.method, METHODS, "auto")
        if v.reference not in REFERENCES:
            raise unknown_choice("--reference", v.reference, REFERENCES, "auto")
        classes = [f for f in self.forget if isinstance(f, str) and f.strip().lower().startswith("class=")]
        if v.reference == "pool" and classes:
            raise InputError(f"--reference pool cannot audit {classes[0].strip()}: the pool's models learned the "
                             "class from its other examples; a class request needs retrained models (--reference "
                             "retrain or auto)")
        if [f for f in a.attacks if f not in ATTACK_FAMILIES] or not a.attacks:
            raise InputError(f"--attacks {','.join(a.attacks)!r} is not valid; use mia, inversion or mia,inversion")
        bad = [name for name in a.mia_attacks if name not in MIA_ATTACKS]
        if bad:
            raise unknown_choice("--mia", bad[0], tuple(MIA_ATTACKS))
        if a.reference_models < 2 and NEEDS_REFERENCE & set(a.mia_attacks):
            raise InputError("--reference-models must be at least 2 for the LiRA, RMIA and shadow attacks")
        bad = [f for f in self.output.formats if f not in FORMATS]
        if bad:
            raise unknown_choice("--format", bad[0], ("html", "pdf", "junit", "none"))
        if out is not None and out.exists() and not out.is_dir():
            raise InputError(f"--out {out} is a file; give a folder for the audit's outputs")
        blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None) if out else None
        if blocked is not None:
            raise InputError(f"--out {out} lies under {blocked}, which is a file; give a folder for the outputs")
        from audit.output_folder import check_out_folder

        check_out_folder(out)  # never replace a file the user put there (exit 2 before any work)
        return parse_gates(v.fail_on)

    @property
    def mia_attacks(self) -> list[str]:
        """The membership attacks that run (none when the ``mia`` family is not chosen)."""
        return list(self.attack.mia_attacks) if "mia" in self.attack.attacks else []
