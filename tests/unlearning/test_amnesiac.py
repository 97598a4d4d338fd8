"""Amnesiac unlearning: exact undo of a recorded step, refusals, and forgetting a class."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from audit.models import build_model
from unlearning import (
    AmnesiacRefused,
    TrainConfig,
    UpdateLog,
    UpdateRecorder,
    accuracy,
    amnesiac_unlearn,
)
from unlearning.amnesiac import default_repair
from unlearning.training import make_optimizer, predict_logits
from unlearning.update_log import partial_path

FORGET_ID = 7


def _float_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {f"p/{k}": p.detach().clone() for k, p in model.named_parameters()}
    state.update({f"b/{k}": b.detach().clone() for k, b in model.named_buffers() if b.is_floating_point()})
    return state


def _train_with_one_recorded_step(digits, log_dir: Path, dtype: torch.dtype, close: bool = True):
    """Three unrecorded Adam steps, then one recorded step (its batch holds FORGET_ID) and nothing after it."""
    model = build_model("smallcnn", 1, 10, *digits.channel_stats(), seed=0)
    recorder = UpdateRecorder(model, log_dir, record_ids=torch.tensor([FORGET_ID]), dtype=dtype, record="samples")
    optimizer = recorder.wrap(make_optimizer(model, TrainConfig(lr=1e-2)))
    batches = [torch.arange(20, 52), torch.arange(52, 84), torch.arange(84, 116), torch.arange(0, 32)]
    before = None
    model.train()
    for i, ids in enumerate(batches):
        if i == len(batches) - 1:
            before = _float_state(model)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(digits.x_train[ids]), digits.y_train[ids]).backward()
        optimizer.step(ids=ids)
    if close:
        recorder.close()
    model.eval()
    return model, before


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_removing_the_only_recorded_step_restores_weights_and_buffers(digits, tmp_path, dtype):
    model, before = _train_with_one_recorded_step(digits, tmp_path / "log", dtype)
    after = _float_state(model)
    # The step moved every parameter group and the BatchNorm running statistics.
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("p/"))
    assert any(not torch.equal(after[k], before[k]) for k in before if "running_var" in k)

    result = amnesiac_unlearn(model, tmp_path / "log", torch.tensor([FORGET_ID]))
    restored = _float_state(result.model)
    assert result.details["batches_removed"] == 1
    assert result.details["total_steps"] == 4
    for key, value in before.items():
        if dtype == torch.float64:
            assert torch.equal(restored[key], value), key  # bit for bit
        else:
            torch.testing.assert_close(restored[key], value, rtol=0, atol=1e-6, msg=key)
    # The input model is left as it was.
    for key, value in after.items():
        assert torch.equal(_float_state(model)[key], value)


def test_ids_outside_the_recorded_batch_remove_nothing(digits, tmp_path):
    model, _ = _train_with_one_recorded_step(digits, tmp_path / "log", torch.float64)
    # Every id's batches are recorded only for FORGET_ID; others are not covered at all.
    with pytest.raises(AmnesiacRefused, match="relabel"):
        amnesiac_unlearn(model, tmp_path / "log", torch.tensor([FORGET_ID, 40]))


def test_refuses_a_log_that_was_never_closed(digits, tmp_path):
    model, _ = _train_with_one_recorded_step(digits, tmp_path / "log", torch.float32, close=False)
    # An unclosed log keeps its .partial name; opened there, it is refused as unfinished.
    assert not (tmp_path / "log").exists()
    with pytest.raises(AmnesiacRefused, match="never closed.*relabel"):
        amnesiac_unlearn(model, partial_path(tmp_path / "log"), torch.tensor([FORGET_ID]))


def test_refuses_a_tampered_or_missing_log(digits, tmp_path):
    model, _ = _train_with_one_recorded_step(digits, tmp_path / "log", torch.float32)
    with pytest.raises(AmnesiacRefused, match="no update log.*relabel"):
        amnesiac_unlearn(model, tmp_path / "nothing-here", torch.tensor([FORGET_ID]))
    step_file = next((tmp_path / "log" / "batches").iterdir())
    raw = bytearray(step_file.read_bytes())
    raw[-1] ^= 0x01
    step_file.write_bytes(bytes(raw))
    with pytest.raises(AmnesiacRefused, match="checksum.*relabel"):
        amnesiac_unlearn(model, tmp_path / "log", torch.tensor([FORGET_ID]))


def test_refuses_a_log_of_another_architecture(digits, tmp_path):
    _, _ = _train_with_one_recorded_step(digits, tmp_path / "log", torch.float32)
    other = build_model("smallcnn", 1, 10, *digits.channel_stats(), arch_args={"width": 8}, seed=0)
    with pytest.raises(AmnesiacRefused, match="another architecture"):
        amnesiac_unlearn(other, tmp_path / "log", torch.tensor([FORGET_ID]))


def test_removing_class_3_drops_its_accuracy(trained_digits):
    data, mf = trained_digits.data, trained_digits.model_file
    threes = torch.nonzero(data.y_train == 3).flatten()
    test3, kept = data.y_test == 3, data.y_test != 3
    original = accuracy(mf.model, data.x_test[test3], data.y_test[test3])
    assert original > 0.9

    log = UpdateLog.open(mf.log_dir)
    removal = amnesiac_unlearn(mf.model, log, threes)
    # Every recorded step whose batch held a 3 is removed, and nothing else.
    assert removal.details["batches_removed"] == len(log.steps_touching(threes))
    assert removal.details["batches_removed"] < removal.details["total_steps"]
    removed_acc = accuracy(removal.model, data.x_test[test3], data.y_test[test3])
    assert removed_acc < original - 0.5
    # Packed batches remove a part of the steps: BatchNorm's running variances must stay valid
    # (a variance below 0 gave NaN logits, and an accuracy that looked like forgetting).
    assert torch.isfinite(predict_logits(removal.model, data.x_test)).all()

    recipe = TrainConfig.from_dict(mf.recipe)
    repaired = amnesiac_unlearn(mf.model, log, threes, repair=default_repair(recipe), x_train=data.x_train,
                                y_train=data.y_train, tolerance=None)  # a fixed epoch, as before issue 24
    assert accuracy(repaired.model, data.x_test[test3], data.y_test[test3]) <= 0.05
    assert accuracy(repaired.model, data.x_test[kept], data.y_test[kept]) >= 0.9
    assert repaired.details["repair_epochs"] == 1 and "repair" not in repaired.details
    # The file's model itself is untouched.
    assert accuracy(mf.model, data.x_test[test3], data.y_test[test3]) == original
    assert copy.deepcopy(repaired.details)["removal_seconds"] > 0


def test_class_removal_keeps_the_other_classes_once_batchnorm_is_remeasured(trained_digits):
    """Packed class removal: the subtracted running statistics break the other classes, re-measured ones do not."""
    data, mf = trained_digits.data, trained_digits.model_file
    threes = torch.nonzero(data.y_train == 3).flatten()
    kept = data.y_test != 3
    log = UpdateLog.open(mf.log_dir)
    subtracted = amnesiac_unlearn(mf.model, log, threes)
    remeasured = amnesiac_unlearn(mf.model, log, threes, x_train=data.x_train, y_train=data.y_train)
    assert subtracted.details["batchnorm_reestimated_layers"] == 0
    assert remeasured.details["batchnorm_reestimated_layers"] == 3
    assert remeasured.details["batchnorm_examples"] == 256
    # The weights are the subtraction's in both; only the running statistics differ.
    weights = dict(subtracted.model.named_parameters())
    assert all(torch.equal(weights[k], p) for k, p in remeasured.model.named_parameters())
    others = accuracy(remeasured.model, data.x_test[kept], data.y_test[kept])
    assert others >= 0.97 and others > accuracy(subtracted.model, data.x_test[kept], data.y_test[kept]) + 0.03
    assert accuracy(remeasured.model, data.x_test[~kept], data.y_test[~kept]) <= 0.05


def test_adaptive_repair_skips_an_intact_model_and_stops_at_its_cap(trained_digits):
    data, mf = trained_digits.data, trained_digits.model_file
    forget = torch.nonzero(data.y_train == 3).flatten()[:3]
    log = UpdateLog.open(mf.log_dir)
    repair = default_repair(TrainConfig.from_dict(mf.recipe))
    args = dict(repair=repair, x_train=data.x_train, y_train=data.y_train)
    lenient = amnesiac_unlearn(mf.model, log, forget, tolerance=1.0, **args)  # nothing can be "broken" by 100 points
    plain = amnesiac_unlearn(mf.model, log, forget, x_train=data.x_train, y_train=data.y_train)
    done = lenient.details["repair"]
    assert done["rounds_run"] == 0 and done["stopped"] == "within tolerance" and lenient.details["repair_epochs"] == 0
    assert all(torch.equal(a, b) for a, b in zip(lenient.model.state_dict().values(), plain.model.state_dict().values()))
    # A tolerance no model can meet (better than the original by a point) runs to the cap and keeps the best state.
    strict = amnesiac_unlearn(mf.model, log, forget, tolerance=-0.01 - 1e-9, **args)
    done = strict.details["repair"]
    assert done["stopped"] == "cap reached" and done["rounds_run"] == done["rounds_per_epoch"] * repair.epochs
    trail = done["retain_accuracy_after_round"]
    assert len(trail) == done["rounds_run"] + 1 and trail[done["round_kept"]] == max(trail)
    # The probe is every retained example here (fewer than PROBE_EXAMPLES): the model returned is the probe's best.
    retained = ~torch.isin(torch.arange(len(data.y_train)), forget)
    assert accuracy(strict.model, data.x_train[retained], data.y_train[retained]) == pytest.approx(max(trail))
