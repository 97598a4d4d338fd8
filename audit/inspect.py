"""``audit info``: what a model file is, as a JSON-able document and as text."""

from __future__ import annotations

from pathlib import Path

from audit.modelfile import ModelFile, load_model


def log_status(mf: ModelFile) -> dict | None:
    """The update log's batches, bytes and whether every file verifies against the model file's digest.

    ``verified`` is True only when :func:`audit.unlearn.open_trusted_log` would accept
    the log; ``problem`` says why not.
    """
    if not mf.update_log:
        return None
    from audit.unlearn import trusted_log_or_problem

    rec = mf.update_log
    # Files written before packing existed were all trained on random batches.
    out = {"dir": str(mf.log_dir), "record": rec.get("record"), "packing": rec.get("packing", "off"),
           "dtype": rec.get("dtype"),
           "total_steps": rec.get("total_steps"), "batches": rec.get("recorded"), "bytes": rec.get("bytes"),
           "verified": False, "problem": None}
    log, problem = trusted_log_or_problem(mf)
    if log is None:
        out["problem"] = problem
        return out
    out["batches"], out["bytes"] = len(log.entries), log.bytes
    out["verified"] = True
    return out


def describe_model(path: Path, arch: str | None = None, data: str | None = None, data_root: str | None = None,
                   arch_args: str | dict | None = None, code_paths: list[str] | None = None,
                   normalize: str | None = None) -> dict:
    """What ``path`` is, as ``audit run`` would load it: ``arch`` is a built-in name or the user's
    ``package.module:factory`` (imported from ``code_paths``, called with ``arch_args``). A bare
    state_dict without ``arch`` or ``data`` is described from its tensors alone."""
    from audit.usercode import UserCode, is_reference

    user = None
    if is_reference(arch) or arch_args or code_paths or normalize:
        user = UserCode.load(arch, arch_args, None, normalize, code_paths)
    if not (data and (arch or user is not None)):
        tensors = _bare_state_dict(Path(path))
        if tensors is not None:
            return _describe_tensors(path, tensors, arch, data)
    shape, classes = None, None
    ds = None
    if data:
        from audit.data import load_dataset

        ds = load_dataset(data, data_root)
        shape, classes = ds.input_shape, ds.num_classes
    mf = load_model(path, arch=arch, input_shape=shape, num_classes=classes, user=user)
    metrics = dict(mf.metrics)
    if ds is not None and (mf.kind != "toolkit" or not metrics):
        from audit.training import evaluate

        if mf.kind == "torchscript":
            mf.num_classes = classes or 0
        metrics = evaluate(mf.model, ds)
    n_params = sum(p.numel() for p in mf.model.parameters())
    return {
        "path": str(path),
        "kind": mf.kind,
        "arch": mf.arch,
        "arch_args": mf.arch_args,
        "parameters": int(n_params),
        "input_shape": list(mf.input_shape),
        "num_classes": mf.num_classes,
        "normalization": {"mean": mf.mean, "std": mf.std},
        "data": mf.data,
        "recipe": mf.recipe,
        "seed": mf.seed,
        "train_accuracy": metrics.get("train_accuracy"),
        "test_accuracy": metrics.get("test_accuracy"),
        "per_class_test_accuracy": metrics.get("per_class_test_accuracy"),
        "update_log": log_status(mf),
        "lineage": mf.lineage,
        "assumed": list(mf.assumptions),  # what loading had to assume (no normalisation recorded, ...)
    }


def _bare_state_dict(path: Path) -> dict | None:
    """The tensors of a bare state_dict (torch.save of a dict of tensors, or .safetensors), read
    with ``weights_only=True``; None for anything else (loading it says what it is)."""
    from audit.modelfile import records_architecture

    if not path.is_file() or records_architecture(path):
        return None
    import torch

    from audit.file_safety import archive_kind, check_archive, load_tensors_only

    check_archive(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception:  # noqa: BLE001 - not a safetensors file: loading it says so in one line
            return None
    if archive_kind(path):
        return None
    doc = load_tensors_only(path)
    if isinstance(doc, dict) and doc and all(isinstance(v, torch.Tensor) for v in doc.values()):
        return doc
    return None


def _describe_tensors(path: Path, tensors: dict, arch: str | None, data: str | None) -> dict:
    missing = " and ".join(flag for flag, given in (("--arch NAME (or your package.module:factory)", arch),
                                                    ("--data SPEC", data)) if not given)
    return {
        "path": str(path), "kind": "state_dict", "arch": arch, "arch_args": {},
        "parameters": int(sum(t.numel() for t in tensors.values())), "tensors": len(tensors),
        "dtypes": sorted({str(t.dtype).replace("torch.", "") for t in tensors.values()}),
        "input_shape": None, "num_classes": None, "normalization": None, "data": None, "recipe": None,
        "seed": None, "train_accuracy": None, "test_accuracy": None, "per_class_test_accuracy": None,
        "update_log": None, "lineage": None,
        "to_say_more": f"pass {missing} to load it as a network and measure its accuracy",
    }


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _format_lineage(ln: dict) -> str:
    forget = ln.get("forget") or {}
    sha = (ln.get("parent_sha256") or "")[:12]
    text = (f"lineage: {ln.get('method')} forgot {forget.get('spec')} ({forget.get('n')} examples) from "
            f"{ln.get('parent')}{f' (sha256 {sha})' if sha else ''}, {ln.get('epochs')} {'repair ' if ln.get('method') == 'amnesiac' else ''}epochs, seed {ln.get('seed')}, "
            f"{ln.get('seconds', 0.0):.1f}s")
    details = ln.get("details") or {}
    if "batches_removed" in details:
        text += f", removed {details['batches_removed']}/{details.get('total_steps')} batches"
    metrics = ln.get("accuracy") or {}
    if metrics.get("forget_accuracy") is not None:
        text += (f"; forget accuracy {_pct(metrics['forget_accuracy'])}, "
                 f"retain accuracy {_pct(metrics.get('retain_accuracy'))}")
    return text


def format_description(doc: dict) -> str:
    if doc.get("input_shape") is None:  # a bare state_dict described from its tensors alone
        return (f"{doc['path']}: bare state_dict, {doc['tensors']} tensors, {doc['parameters']:,} values "
                f"({', '.join(doc['dtypes'])}); {doc['to_say_more']}")
    lines = [f"{doc['path']}: {doc['kind']} model, {doc['arch']} ({doc['parameters']:,} parameters), "
             f"input {'x'.join(map(str, doc['input_shape']))}, {doc['num_classes']} classes"]
    if doc.get("data"):
        d = doc["data"]
        lines.append(f"data: {d['spec']} ({d['n_train']} train / {d['n_test']} test), sha256 {d['sha256'][:12]}")
    if doc.get("recipe"):
        r = doc["recipe"]
        lines.append(f"recipe: {r['optimizer']} lr {r['lr']}, batch {r['batch_size']}, {r['epochs']} epochs, seed {r['seed']}")
    lines.append(f"accuracy: train {_pct(doc['train_accuracy'])}, test {_pct(doc['test_accuracy'])}")
    if doc.get("per_class_test_accuracy"):
        lines.append("test accuracy per class: " + ", ".join(
            f"{i}: {_pct(v)}" for i, v in enumerate(doc["per_class_test_accuracy"])))
    log = doc.get("update_log")
    if log:
        state = "verified" if log["verified"] else f"NOT verified: {log['problem']}"
        packed = " (packed batches)" if log.get("packing") == "on" else ""
        lines.append(f"update log: {log['dir']} records {log['record']}{packed}, {log['batches']}/{log['total_steps']} "
                     f"batches, {log['bytes']:,} bytes ({log['dtype']}), {state}")
    else:
        lines.append("update log: none")
    if doc.get("lineage"):
        lines.append(_format_lineage(doc["lineage"]))
    lines.extend(f"assumed: {line}" for line in doc.get("assumed") or [])
    return "\n".join(lines)
