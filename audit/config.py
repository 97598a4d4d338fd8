"""Settings from ``--config FILE``, an ``audit.toml`` or ``[tool.audit]`` in pyproject.toml.

Command-line options win over the file. Keys (all optional): ``fail_on`` (list of gate
expressions), ``forget`` (list of specs), ``method``, ``reference``, ``attacks``,
``mia_attacks``, ``reference_models``, ``retrains``, ``alpha``, ``max_residual``, ``inconclusive`` (fail | pass),
``original``, ``seed``, ``data``, ``data_root``, ``out``; the user's own model: ``arch``
(``package.module:factory``), ``arch_args``, ``code_path``, ``train`` (``package.module:fit``),
``normalize``, and the table ``[tool.audit.recipe]`` (epochs, batch_size, lr, optimizer,
momentum, weight_decay, lr_schedule, augment).

A file found in the current folder (not named with ``--config``) is a convention, as
pytest's and ruff's are, not a choice the user made on this command line: :func:`read_settings`
says which file and which keys it took, and ``isolated`` (``--isolated``) ignores every
config file, for auditors running the tool in a repository they do not control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from audit.errors import InputError

KEYS = {"fail_on": list, "forget": list, "method": str, "reference": str, "attacks": (list, str),
        "mia_attacks": (list, str), "reference_models": int, "seed": int, "data": str, "data_root": str,
        "out": str, "inversion_iterations": int, "retrains": int, "alpha": (float, int), "max_residual": (float, int), "inconclusive": str,
        "max_memorised_auc": (float, int), "not_memorised": str,
        "original": str, "arch": str, "arch_args": (str, dict), "code_path": (list, str), "train": str,
        "normalize": str, "recipe": dict, "executor": str, "ray_address": str, "cpus_per_model": (float, int),
        "gpus_per_model": (float, int)}
# [tool.audit.recipe]: the declarative training recipe of a model file that carries none.
RECIPE_KEYS = {"epochs": int, "batch_size": int, "lr": (float, int), "optimizer": str, "momentum": (float, int),
               "weight_decay": (float, int), "lr_schedule": str, "augment": bool, "seed": int}
# TOML's integers are 64-bit; Python's tomllib reads larger ones, which then fail deep in a run.
MAX_INT = 2**63 - 1


# Settings that name code the run imports and calls: a file nobody named must not supply
# them silently.
CODE_KEYS = ("arch", "arch_args", "code_path", "train")


def loosens(key: str, value) -> bool:
    """Whether ``key = value`` in a config file could let through what the defaults fail: the
    inconclusive policy "pass", a margin (residual, memorised AUC) above the default, any other alpha (a smaller one
    makes every target inconclusive, a larger one changes what the power check needs)."""
    from audit.scoring import DEFAULT_ALPHA, DEFAULT_MAX_MEMORISED_AUC, DEFAULT_MAX_RESIDUAL

    if key == "inconclusive":
        return value != "fail"
    if key == "not_memorised":
        return value != "fail" and value != "pass"  # pass is the default; only an unknown word is not tighter
    if key == "max_memorised_auc":
        return not (isinstance(value, (int, float)) and value <= DEFAULT_MAX_MEMORISED_AUC)
    if key == "max_residual":
        return not (isinstance(value, (int, float)) and value <= DEFAULT_MAX_RESIDUAL)
    if key == "alpha":
        return value != DEFAULT_ALPHA
    return False


@dataclass(frozen=True)
class ConfigSource:
    """The settings of one config file, and where they came from.

    ``path`` is None when no file was read; ``named`` says whether the user named it
    (``--config``) or it was found in the search folder (audit.toml, pyproject.toml).
    """

    values: dict = field(default_factory=dict)
    path: Path | None = None
    named: bool = False

    def without_loosening(self) -> tuple["ConfigSource", dict[str, str]]:
        """For a file nobody named: the settings without those that loosen the verdict
        (:func:`loosens`), and each dropped key with why. A named file is taken as it is."""
        if self.named:
            return self, {}
        dropped = {k: "a file not named with --config may not loosen the verdict; pass it on the command line"
                   for k, v in self.values.items() if loosens(k, v)}
        kept = {k: v for k, v in self.values.items() if k not in dropped}
        return ConfigSource(kept, self.path, self.named), dropped

    @property
    def keys(self) -> list[str]:
        """The keys the file sets, in the file's order."""
        return list(self.values)

    def announcement(self, taken: list[str], ignored: dict[str, str] | None = None) -> str | None:
        """One line naming the file and the keys taken from it (``taken``), and those set
        there but not used (``ignored``: key -> why); None when nothing came from a file."""
        if self.path is None or not (taken or ignored):
            return None
        table = " [tool.audit]" if self.path.name == "pyproject.toml" else ""
        line = f"settings from {self.path}{table}: {', '.join(taken) if taken else 'none used'}"
        if ignored:
            line += "; not used: " + ", ".join(f"{k} ({why})" for k, why in ignored.items())
        if not self.named:
            line += " (found in the current folder; --isolated ignores config files)"
        return line


def read_settings(path: Path | None, search_dir: Path | None = None, isolated: bool = False) -> ConfigSource:
    """The settings of ``path`` (``--config``), or of ./audit.toml or ./pyproject.toml's
    ``[tool.audit]`` in ``search_dir`` (default: the current folder); ``isolated``: none."""
    if isolated:
        if path is not None:
            raise InputError(f"--isolated ignores every config file, so --config {path} would be ignored too; "
                             "drop one of them")
        return ConfigSource()
    if path is None:
        search_dir = search_dir or Path.cwd()
        for candidate in (search_dir / "audit.toml", search_dir / "pyproject.toml"):
            if candidate.is_file():
                settings = _read(candidate, required=candidate.name == "audit.toml")
                if settings or candidate.name == "audit.toml":
                    return ConfigSource(settings, candidate, named=False)
        return ConfigSource()
    if not path.exists():
        raise InputError(f"config file {path} not found")
    if not path.is_file():
        raise InputError(f"config file {path} is not a regular file (a folder, FIFO or device); name a TOML file")
    return ConfigSource(_read(path, required=True), path, named=True)


def load_config(path: Path | None, search_dir: Path | None = None,
                isolated: bool = False) -> tuple[dict, Path | None]:
    """(settings, the file they came from). Without ``path``, looks in ``search_dir``;
    ``isolated``: reads no file. See :func:`read_settings` for where the values came from."""
    source = read_settings(path, search_dir, isolated)
    return dict(source.values), source.path


def _read(path: Path, required: bool) -> dict:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"config file {path} is not readable TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"config file {path} is nested too deeply to be a config file") from None
    tool = doc.get("tool", {})
    if not isinstance(tool, dict):
        raise InputError(f"'tool' in {path} must be a table such as [tool.audit], not a {type(tool).__name__}")
    section = tool.get("audit")
    if section is None:
        section = {k: v for k, v in doc.items() if k != "tool"} if path.name != "pyproject.toml" else {}
    if not isinstance(section, dict):
        raise InputError(f"[tool.audit] in {path} must be a table")
    out = {}
    for key, value in section.items():
        norm = key.replace("-", "_")
        if norm not in KEYS:
            raise InputError(f"unknown setting {key!r} in {path}; known: {', '.join(sorted(KEYS))}")
        if not isinstance(value, KEYS[norm]) or isinstance(value, bool) and KEYS[norm] is int:
            raise InputError(f"setting {key!r} in {path} has the wrong type ({type(value).__name__})")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise InputError(f"setting {key!r} in {path} must be a list of strings, e.g. [\"class=3\"]")
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise InputError(f"setting {key!r} in {path} must not be negative")
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_INT:
            raise InputError(f"setting {key!r} in {path} is too large: use at most {MAX_INT}")
        if norm == "recipe":
            value = _recipe(value, path)
        out[norm] = value
    return out


def _recipe(table: dict, path: Path) -> dict:
    out = {}
    for key, value in table.items():
        norm = key.replace("-", "_")
        if norm not in RECIPE_KEYS:
            raise InputError(f"unknown recipe setting {key!r} in [tool.audit.recipe] of {path}; known: "
                             f"{', '.join(sorted(RECIPE_KEYS))}")
        kind = RECIPE_KEYS[norm]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise InputError(f"recipe setting {key!r} in {path} has the wrong type ({type(value).__name__})")
        out[norm] = float(value) if kind == (float, int) else value
    return out
