"""The amnesiac update log: the identity it rests on, crash safety, tamper evidence."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from audit.models import build_model
from unlearning import TrainConfig, UpdateLog, UpdateLogError, UpdateRecorder, fit
from unlearning.update_log import partial_path

from tests.unlearning.log_arithmetic import max_error, model_state, plus_deltas


def _digits_smallcnn(digits, seed: int = 0):
    mean, std = digits.channel_stats()
    return build_model("smallcnn", 1, 10, mean, std, seed=seed)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 0.0), (torch.float32, 2e-5)],
                         ids=["float64", "float32"])
def test_record_all_identity_smallcnn(digits, tmp_path, dtype, tolerance):
    """Initial weights and buffers + all recorded deltas == final weights and buffers."""
    model = _digits_smallcnn(digits)
    initial = model_state(model)
    assert any(k.endswith("running_mean") for k in initial)  # BatchNorm buffers are part of it

    recorder = UpdateRecorder(model, tmp_path / "log", dtype=dtype)
    optimizer = recorder.wrap(torch.optim.Adam(model.parameters(), lr=1e-3))
    config = TrainConfig(epochs=3, batch_size=64, seed=0)
    fit(model, digits.x_train, digits.y_train, config, optimizer=optimizer)
    summary = recorder.close()
    final = model_state(model)

    log = UpdateLog.open(tmp_path / "log")
    steps_per_epoch = len(digits.y_train) // 64  # the short last batch (4 examples) is merged
    assert log.closed and summary["recorded"] == len(log.entries) == 3 * steps_per_epoch
    assert summary["bytes"] == log.bytes > 0
    assert [e.step for e in log] == list(range(3 * steps_per_epoch))

    # The run did move things: weights and running statistics both.
    assert max_error(initial, final) > 1e-2
    bn_mean = next(k for k in initial if k.endswith("features.1.running_mean"))
    assert not torch.equal(initial[bn_mean], final[bn_mean])

    replayed = plus_deltas(initial, log)
    assert max_error(replayed, final) <= tolerance

    # Every example's id was recorded once per epoch.
    ids = torch.cat([log.read(e)[2] for e in log])
    assert torch.equal(torch.bincount(ids, minlength=len(digits.y_train)),
                       torch.full((len(digits.y_train),), 3))


def test_record_all_identity_user_loop_sgd_batchnorm(digits, tmp_path):
    """The recorder wraps any optimizer in a hand-written loop (SGD with momentum, BatchNorm1d)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    initial = model_state(model)
    recorder = UpdateRecorder(model, tmp_path / "log", dtype=torch.float64)
    optimizer = recorder.wrap(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    ids_all = torch.arange(len(digits.y_train))
    model.train()
    for _ in range(2):
        for ids in ids_all[torch.randperm(len(ids_all))].split(100):
            optimizer.zero_grad()
            F.cross_entropy(model(digits.x_train[ids]), digits.y_train[ids]).backward()
            optimizer.step(ids=ids)
    recorder.close()
    log = UpdateLog.open(tmp_path / "log")
    assert len(log.entries) == 2 * 14
    assert max_error(plus_deltas(initial, log), model_state(model)) == 0.0
    assert set(log.header["buffer_names"]) >= {"2.running_mean", "2.running_var"}


def test_selected_ids_record_only_their_batches(digits, tmp_path):
    model = _digits_smallcnn(digits)
    forget = torch.nonzero(digits.y_train == 3).flatten()[:5]
    recorder = UpdateRecorder(model, tmp_path / "log", record_ids=forget, record="samples")
    optimizer = recorder.wrap(torch.optim.Adam(model.parameters(), lr=1e-3))
    fit(model, digits.x_train, digits.y_train, TrainConfig(epochs=2, batch_size=64, seed=0), optimizer=optimizer)
    summary = recorder.close()
    log = UpdateLog.open(tmp_path / "log")
    assert summary["total_steps"] == 2 * 21  # 1348 = 21 x 64 + 4: the short last batch is merged
    # Five ids spread over at most five batches per epoch, at least one.
    assert 2 <= len(log.entries) <= 10
    for entry in log:
        assert torch.isin(log.read(entry)[2], forget).any()
    assert torch.equal(log.covered_ids, forget.sort().values)
    assert torch.equal(log.uncovered(torch.tensor([int(forget[0]), 0 if 0 not in forget else 1])),
                       torch.tensor([0 if 0 not in forget else 1]))
    assert {e.step for e in log.steps_touching(forget[:1])} <= {e.step for e in log}


def test_float16_log_halves_the_bytes(digits, tmp_path):
    sizes = {}
    for dtype in (torch.float32, torch.float16):
        model = _digits_smallcnn(digits)
        recorder = UpdateRecorder(model, tmp_path / str(dtype), dtype=dtype)
        optimizer = recorder.wrap(torch.optim.Adam(model.parameters(), lr=1e-3))
        fit(model, digits.x_train[:256], digits.y_train[:256], TrainConfig(epochs=1, seed=0), optimizer=optimizer)
        sizes[dtype] = recorder.close()["bytes"]
    ratio = sizes[torch.float16] / sizes[torch.float32]
    assert 0.45 < ratio < 0.6, sizes


# --- crash safety --------------------------------------------------------------------------------

KILL_AFTER = 7

KILLED_TRAINER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from audit.data import load_dataset
    from audit.models import build_model
    from unlearning import TrainConfig, UpdateRecorder, fit

    log_dir, kill_after = sys.argv[1], int(sys.argv[2])
    ds = load_dataset("digits")
    mean, std = ds.channel_stats()
    model = build_model("smallcnn", 1, 10, mean, std, seed=0)
    recorder = UpdateRecorder(model, log_dir)
    optimizer = recorder.wrap(torch.optim.Adam(model.parameters(), lr=1e-3))

    def on_step(epoch, step, steps_per_epoch):
        if epoch * steps_per_epoch + step + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    fit(model, ds.x_train, ds.y_train, TrainConfig(epochs=2, seed=0), optimizer=optimizer, on_step=on_step)
    print("not killed")
    """
)


class _StopTraining(Exception):
    pass


def test_kill_9_leaves_a_log_usable_to_the_last_step(digits, tmp_path, cli):
    log_dir = tmp_path / "killed.updates"
    cli_env = cli.env()
    proc = subprocess.run([sys.executable, "-c", KILLED_TRAINER, str(log_dir), str(KILL_AFTER)],
                          capture_output=True, text=True, timeout=300, env=cli_env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "not killed" not in proc.stdout

    assert not log_dir.exists()  # an unfinished log never takes the final name
    log = UpdateLog.open(partial_path(log_dir))
    assert log.closed is False and log.total_steps is None
    assert [e.step for e in log] == list(range(KILL_AFTER))

    # Usable: the same seeded run stopped after KILL_AFTER steps is initial + those deltas.
    model = _digits_smallcnn(digits)
    initial = model_state(model)
    done = []

    def stop(epoch, step, steps_per_epoch):
        done.append(step)
        if len(done) == KILL_AFTER:
            raise _StopTraining

    with pytest.raises(_StopTraining):
        fit(model, digits.x_train, digits.y_train, TrainConfig(epochs=2, seed=0), on_step=stop)
    assert max_error(plus_deltas(initial, log), model_state(model)) < 1e-5


@pytest.fixture
def closed_log(digits, tmp_path):
    model = _digits_smallcnn(digits)
    recorder = UpdateRecorder(model, tmp_path / "log")
    optimizer = recorder.wrap(torch.optim.Adam(model.parameters(), lr=1e-3))
    fit(model, digits.x_train[:320], digits.y_train[:320], TrainConfig(epochs=1, seed=0), optimizer=optimizer)
    recorder.close()
    return tmp_path / "log"


def test_journal_torn_mid_line(closed_log):
    journal = closed_log / "journal.jsonl"
    raw = journal.read_bytes()
    lines = raw.split(b"\n")
    assert len(lines) == 1 + 5 + 1 + 1  # header checksums, 5 steps, closing line, final ""
    # A crash while appending step 3's line: steps 0-2 complete, step 3 torn.
    torn = b"\n".join(lines[:4]) + b"\n" + lines[4][: len(lines[4]) // 2]
    journal.write_bytes(torn)
    log = UpdateLog.open(closed_log)
    assert log.closed is False and log.torn_tail is True
    assert [e.step for e in log] == [0, 1, 2]
    params, buffers, ids = log.read(log.entries[-1])
    assert params and buffers and len(ids) == 64


@pytest.mark.parametrize("damage, message", [
    ("flip a byte in a batch file", "fails its SHA-256 checksum"),
    ("delete a batch file", "missing"),
    ("edit the header", "header.json fails its SHA-256 checksum"),
    ("corrupt a middle journal line", "line 3 is corrupt"),
    ("steps after the closing line", "after its closing line"),
    ("a step line cut from a closed journal", "closes with 5 recorded steps but lists 4"),
    ("no journal", "no update log"),
])
def test_damaged_log_is_refused_with_a_clear_message(closed_log, damage, message):
    batch = closed_log / "batches" / "s00000002.safetensors"
    journal = closed_log / "journal.jsonl"
    if damage == "flip a byte in a batch file":
        blob = bytearray(batch.read_bytes())
        blob[-3] ^= 0x01
        batch.write_bytes(bytes(blob))
    elif damage == "delete a batch file":
        batch.unlink()
    elif damage == "edit the header":
        header = json.loads((closed_log / "header.json").read_text())
        header["dtype"] = "float16"
        (closed_log / "header.json").write_text(json.dumps(header, indent=1))
    elif damage == "corrupt a middle journal line":
        lines = journal.read_text().split("\n")
        lines[2] = lines[2][:-5]
        journal.write_text("\n".join(lines))
    elif damage == "steps after the closing line":
        lines = journal.read_text().split("\n")
        journal.write_text("\n".join(lines[:1] + lines[2:-1] + [lines[1], ""]))
    elif damage == "a step line cut from a closed journal":
        lines = journal.read_text().split("\n")
        journal.write_text("\n".join(lines[:3] + lines[4:]))
    else:
        journal.unlink()
    with pytest.raises(UpdateLogError) as err:
        UpdateLog.open(closed_log)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def _copy_model(src, dst_dir):
    shutil.copy(src, dst_dir / src.name)
    shutil.copytree(src.with_name(src.name + ".updates"), dst_dir / (src.name + ".updates"))
    return dst_dir / src.name


def test_info_reports_a_tampered_log_as_not_verified(acceptance_model, tmp_path, cli):
    assert acceptance_model.info["update_log"]["verified"] is True
    model = _copy_model(acceptance_model.path, tmp_path)
    batches = sorted((tmp_path / "m.pt.updates" / "batches").iterdir())
    blob = bytearray(batches[10].read_bytes())
    blob[-1] ^= 0xFF
    batches[10].write_bytes(bytes(blob))
    run = cli.run(["info", model.name, "--json"], tmp_path)
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)["update_log"]
    assert status["verified"] is False and "checksum" in status["problem"]
    text = cli.run(["info", model.name], tmp_path)
    assert "NOT verified" in text.stdout


def test_info_reports_an_unclosed_or_swapped_log(acceptance_model, tmp_path):
    from audit.inspect import describe_model

    model = _copy_model(acceptance_model.path, tmp_path)
    journal = tmp_path / "m.pt.updates" / "journal.jsonl"
    original = journal.read_bytes()
    journal.write_bytes(original[: original.rindex(b'{"bytes"')])  # drop the closing line
    status = describe_model(model)["update_log"]
    assert status["verified"] is False and "never closed" in status["problem"]

    # A complete, valid log that is not byte for byte the one this model was saved with.
    journal.write_bytes(original.replace(b'"closed": true', b'"closed":  true'))
    assert UpdateLog.open(journal.parent).closed
    status = describe_model(model)["update_log"]
    assert status["verified"] is False and "differs" in status["problem"]


def test_failed_training_leaves_no_log(digits, tmp_path):
    """A run that dies mid-way (here: a learning rate so large that the loss turns NaN) leaves nothing."""
    from audit.training import train_model

    with pytest.raises(RuntimeError):
        train_model(digits, tmp_path / "a.pt", arch="smallcnn", config=TrainConfig(epochs=1, lr=1e30), record="all",
                    show_progress=False)
    assert list(tmp_path.iterdir()) == []
