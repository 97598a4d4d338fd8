"""Issue 11, item 6: a poisoned reference-model cache is never used silently.

Entries replaced by valid safetensors files of zeros (with or without a forged digest),
of NaN, or of garbage are retrained with a warning that names the file; the digests of
the models used are in ``ReferenceModels.to_dict()``; ``audit run`` retrains a poisoned
cache instead of reporting chance-level attacks.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from attacks.reference import accuracy_check, model_digest, state_digest, train_reference_models

from tests.cli_runner import run_audit, train

KEY = "tiny-mlp/digits/150-steps"


def _factory() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def pool(digits):
    """200 digits (8x8, scaled to [0, 1]) and a real recipe: Adam, 150 full-batch steps."""
    x, y = digits.x_train[:200], digits.y_train[:200]
    calls: list[int] = []

    def train_reference(ids: np.ndarray, seed: int) -> nn.Module:
        calls.append(seed)
        torch.manual_seed(seed)
        model = _factory()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        t = torch.as_tensor(ids)
        for _ in range(150):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[t]), y[t]).backward()
            opt.step()
        return model.eval()

    return {"n": len(y), "train": train_reference, "check": accuracy_check(x, y, 0.8), "calls": calls}


def _models(pool, cache_dir: Path, check=None):
    return train_reference_models(pool["train"], pool["n"], num_models=2, seed=5, cache_dir=cache_dir,
                                  model_factory=_factory, cache_key=KEY, check=check)


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.safetensors"))


def _stored_digest(path: Path) -> str:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["sha256"]


def _poison(path: Path, fill: float, forge_digest: bool) -> None:
    state = {k: torch.full_like(v, fill) for k, v in _factory().state_dict().items()}
    meta = {"sha256": state_digest(state)} if forge_digest else None
    save_file(state, str(path), metadata=meta)


def _no_tmp(cache_dir: Path) -> None:
    assert not list(cache_dir.glob("*.tmp"))


def test_entries_store_their_digest_and_the_models_report_them(pool, tmp_path):
    first = _models(pool, tmp_path)
    entries = _entries(tmp_path)
    assert len(entries) == 2 and first.from_cache == [False, False]
    assert sorted(first.to_dict()["digests"]) == sorted(_stored_digest(p) for p in entries)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact cache is used without a word
        second = _models(pool, tmp_path, pool["check"])
    assert second.from_cache == [True, True] and second.to_dict()["digests"] == first.to_dict()["digests"]
    assert [model_digest(m) for m in second.models] == second.digests
    _no_tmp(tmp_path)


POISON = {
    "zeros, no digest": (0.0, False, "no digest"),
    "zeros, forged digest": (0.0, True, "accuracy"),
    "NaN, forged digest": (float("nan"), True, "not finite"),
}


@pytest.mark.parametrize("case", list(POISON))
def test_a_poisoned_entry_is_retrained_with_a_warning_naming_it(pool, tmp_path, case):
    fill, forge, reason = POISON[case]
    good = _models(pool, tmp_path)
    victim = _entries(tmp_path)[0]
    _poison(victim, fill, forge)
    n_calls = len(pool["calls"])
    with pytest.warns(UserWarning) as caught:
        again = _models(pool, tmp_path, pool["check"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(victim) in messages[0] and reason in messages[0], messages
    assert "\n" not in messages[0]
    assert len(pool["calls"]) == n_calls + 1 and sorted(again.from_cache) == [False, True]
    # Retrained the same way, so the same weights, and the entry holds them again.
    assert sorted(again.digests) == sorted(good.digests)
    assert _stored_digest(victim) in good.digests
    _no_tmp(tmp_path)


def test_garbage_is_retrained_and_a_diverged_model_names_its_cache_entry(pool, tmp_path):
    _models(pool, tmp_path)
    victim = _entries(tmp_path)[1]
    victim.write_bytes(b"not safetensors")
    with pytest.warns(UserWarning, match="not a readable safetensors"):
        _models(pool, tmp_path)

    def diverging(ids: np.ndarray, seed: int) -> nn.Module:
        model = pool["train"](ids, seed)
        with torch.no_grad():
            model[1].weight.fill_(float("nan"))
        return model

    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError) as err:
        train_reference_models(diverging, pool["n"], num_models=2, seed=5, cache_dir=fresh, model_factory=_factory,
                               cache_key=KEY)
    assert "non-finite" in str(err.value) and str(fresh) in str(err.value) and "\n" not in str(err.value)
    assert not _entries(fresh)  # nothing non-finite is cached


@pytest.mark.slow  # heavy (an end-to-end audit or more): `make test-slow` and CI run it; `make test` stays within 5 minutes
def test_audit_run_retrains_a_cache_poisoned_with_zeros(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    res = train(work, "m.pt", "--record", "class=3", epochs=3)
    assert res.returncode == 0, res.stderr
    cache = tmp_path / "cache"
    args = ["run", "m.pt", "--forget", "class=3", "--method", "relabel", "--reference", "none", "--attacks", "mia",
            "--mia", "lira_online", "--reference-models", "2", "--format", "none", "--quiet",
            "--inconclusive", "pass"]  # the verdict is not what this test is about
    first = run_audit([*args, "--out", "a"], work, env={"AMNESIA_AUDIT_CACHE": str(cache)})
    assert first.returncode == 0, first.stderr
    entries = _entries(cache)
    assert len(entries) == 2
    for p in entries:  # the poisoning: valid safetensors files of zeros
        _poison(p, 0.0, forge_digest=False)
    second = run_audit([*args, "--out", "b"], work, env={"AMNESIA_AUDIT_CACHE": str(cache)})
    assert second.returncode == 0, second.stderr
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and all(ln.startswith("warning: reference-model cache entry") for ln in lines), lines
    for p in entries:  # one line per retrained entry, naming it
        assert sum(str(p) in ln for ln in lines) == 1
        assert _stored_digest(p)  # rewritten with its digest
    docs = [json.loads((work / d / "results.json").read_text())["targets"][0]["membership"][0] for d in ("a", "b")]
    # The same reference models, retrained exactly: the same scores as before the poisoning.
    assert docs[0]["original"]["auc"] == docs[1]["original"]["auc"]
    _no_tmp(cache)
