"""The ``audit`` command. Exit codes: 0 pass, 1 a gate failed, 2 bad usage or input,
3 an attack or a step failed (README, "Exit codes"), 130 interrupted by SIGINT (Ctrl-C),
143 interrupted by SIGTERM (what a CI cancel sends).

On SIGINT or SIGTERM every command stops where it is, removes the files it had staged
under temporary names (so nothing half-written is left and earlier outputs stay as they
were), prints one line and exits 130 or 143. A second signal during that clean-up is
ignored; kill -9 is the way to stop it harder. Warnings print as one ``warning:`` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer

from audit.errors import AuditError, InputError, Interrupted, StepError
from audit.progress import plain_lines_without_terminal, stderr
from reports.text import printable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Make a trained network forget data, then measure what it still leaks.")


class _Command(typer.core.TyperCommand):
    """Usage lines as click writes them: ``audit run [OPTIONS] MODEL``, not typer's ``{MODEL}``, and an
    argument listed by its metavar alone (``MODEL``, not ``MODEL <path>``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name == "argument" and param.metavar:
                param.display_type_rich = lambda ctx: None  # typer appends this type name to the metavar

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]


def _print_version(asked: bool) -> None:
    if not asked:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("amnesia-audit")
    except PackageNotFoundError:  # run from a checkout that was never installed
        number = "unknown (not installed; pip install . records it)"
    typer.echo(f"audit (amnesia-audit) {number}")
    raise typer.Exit(0)


@app.callback()
def _common(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="print the version (from the installed package) and exit"),
) -> None:
    pass


@contextlib.contextmanager
def _stdout_for_the_document_alone() -> Iterator[Callable[[str], None]]:
    """Under ``--json`` stdout holds the JSON document and nothing else. While the command works, what would
    print there goes to stderr: Ray's driver prints its ``(raylet)`` lines (a task retried, a worker died) to
    ``sys.stdout`` whatever ``log_to_driver`` says, and a user's factory or training function, in this process
    or a forked child, may print; so ``sys.stdout`` is stderr, and so is file descriptor 1 (native code, forked
    children) when stdout is a real file. The document is written with the function this yields, to the
    stdout the command was given."""
    given = sys.stdout
    given.flush()
    saved: int | None = None
    with contextlib.suppress(AttributeError, OSError, ValueError):  # a test's StringIO has no descriptor
        if given.fileno() == 1:
            saved = os.dup(1)
            os.dup2(2, 1)

    def write(text: str) -> None:
        if saved is None:
            given.write(text)
            given.flush()
            return
        data = text.encode("utf-8", "surrogateescape")
        while data:
            data = data[os.write(saved, data):]

    sys.stdout = sys.stderr
    try:
        yield write
    finally:
        sys.stdout = given
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


@app.command(cls=_Command, short_help="Train a model from scratch, recording the amnesiac update log.")
def train(
    data: str = typer.Option("digits", "--data", metavar="SPEC",
                             help="digits | mnist | fashion-mnist | cifar10 | cifar100 | npz:PATH | folder:PATH"),
    data_root: Optional[str] = typer.Option(None, "--data-root", metavar="DIR",
                                            help="folder holding torchvision's files (default: none; needed for mnist, "
                                                 "fashion-mnist, cifar10, cifar100)"),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="NAME",
                                       help="smallcnn | convnet | resnet18 | a torchvision model name (default: the "
                                            "data set's, smallcnn for digits, convnet for 28x28)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="INTEGER",
                                         help="training epochs (default: the data set's recipe, 20 for digits, 4 for "
                                              "fashion-mnist)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="INTEGER",
                                             help="examples per batch (default: the data set's recipe, 64 for digits, "
                                                  "256 for fashion-mnist)"),
    lr: Optional[float] = typer.Option(None, "--lr", metavar="FLOAT",
                                       help="learning rate (default: the data set's recipe, 0.001 for digits, 0.003 "
                                            "for fashion-mnist)"),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", metavar="SCHEDULE",
                                              help="none | cosine | step:E:G (default: the data set's recipe, none for "
                                                   "digits, cosine for fashion-mnist)"),
    optimizer: str = typer.Option("adam", "--optimizer", metavar="[adam|sgd]", help="the optimizer"),
    seed: int = typer.Option(0, "--seed", metavar="INTEGER", help="seed of the initial weights and the batch order"),
    record: str = typer.Option("all", "--record", metavar="SPEC",
                               help="all | none | a forget spec: whose batches to record"),
    log_dtype: str = typer.Option("float32", "--log-dtype", metavar="[float32|float16|float64]",
                                  help="float32 | float16 (half the bytes) | float64 (exact)"),
    packing: str = typer.Option("on", "--packing", metavar="[on|off]",
                                help="on: with a --record spec, train the recordable examples in batches of their own, "
                                     "so only their share of the steps is recorded | off: random batches (a batch "
                                     "holding any recordable id is recorded)"),
    out: Path = typer.Option(Path("model.pt"), "--out", "-o", metavar="PATH",
                             help="model file to write; its update log goes beside it"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing on success"),
) -> None:
    """Train a model from scratch, recording the amnesiac update log."""
    from audit.data import load_dataset
    from audit.models import default_recipe
    from audit.training import train_model
    from unlearning import TrainConfig

    ds = load_dataset(data, data_root)
    default_arch, recipe = default_recipe(ds.spec)
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule}
    recipe = {**recipe, **{k: v for k, v in given.items() if v is not None}}
    config = TrainConfig(**recipe, optimizer=optimizer, seed=seed)
    res = train_model(ds, out, arch or default_arch, config, record=record, log_dtype=log_dtype, show_progress=not quiet,
                      packing=packing)
    m = res.model_file.metrics
    log = (f"update log {res.model_file.log_dir} ({res.log_batches}/{res.total_steps} batches, "
           f"{_mb(res.log_bytes)})" if res.model_file.update_log else "no update log")
    if not quiet:
        typer.echo(f"wrote {out}: train accuracy {m['train_accuracy']:.1%}, test accuracy {m['test_accuracy']:.1%}, "
                   f"{log}, {res.seconds:.1f}s")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@app.command(cls=_Command, short_help="Say what a model file is: architecture, data, recipe, accuracy, update log.")
def info(
    model: Path = typer.Argument(..., metavar="MODEL", help="model.pt, a TorchScript archive or a state_dict"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document"),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="NAME", help="architecture of a bare state_dict or "
                                       "archive: smallcnn | resnet18 | a torchvision name | your own "
                                       "package.module:factory (as audit run takes it)"),
    arch_args: Optional[str] = typer.Option(None, "--arch-args", metavar="JSON", help="JSON keyword arguments for "
                                            "your factory, e.g. '{\"width\": 32}'"),
    code_path: Optional[list[str]] = typer.Option(None, "--code-path", metavar="DIR", help="folder added to the "
                                                  "import path for --arch; repeatable"),
    normalize: Optional[str] = typer.Option(None, "--normalize", metavar="MEAN,STD", help="input normalisation of a "
                                            "file that does not record it (as audit run takes it)"),
    data: Optional[str] = typer.Option(None, "--data", metavar="SPEC", help="data spec: the input shape and classes "
                                       "of a bare state_dict, and the data to evaluate files that carry no metrics"),
    data_root: Optional[str] = typer.Option(None, "--data-root", metavar="DIR",
                                            help="folder holding torchvision's files (default: the one recorded in the "
                                                 "model)"),
) -> None:
    """Say what a model file is: architecture, data, recipe, accuracy, update log. A bare state_dict
    without --arch and --data is described from its tensors."""
    from audit.inspect import describe_model

    if as_json:
        with _stdout_for_the_document_alone() as write:
            doc = describe_model(model, arch=arch, data=data, data_root=data_root, arch_args=arch_args,
                                 code_paths=code_path or None, normalize=normalize)
            write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        return
    doc = describe_model(model, arch=arch, data=data, data_root=data_root, arch_args=arch_args,
                         code_paths=code_path or None, normalize=normalize)
    from audit.inspect import format_description

    typer.echo(format_description(doc))


@app.command(cls=_Command, short_help="Forget a set of training examples and write the unlearned model.")
def unlearn(
    model: Path = typer.Argument(..., metavar="MODEL", help="the trained model.pt"),
    forget: str = typer.Option(..., "--forget", "-f", metavar="SPEC",
                               help="class=3 | class=3,7 | samples=PATH | random=0.01@SEED"),
    method: str = typer.Option("amnesiac", "--method", metavar="[amnesiac|relabel|finetune|retrain]",
                               help="how to forget: amnesiac subtracts the recorded updates; relabel, finetune and "
                                    "retrain train (docs/unlearning.md)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="INTEGER",
                                         help="repair/training epochs (default: the method's)"),
    seed: int = typer.Option(0, "--seed", metavar="INTEGER",
                             help="seed of relabel's wrong labels, the batch order and retrain's weights"),
    out: Path = typer.Option(..., "--out", "-o", metavar="PATH", help="where to write the unlearned model file"),
    data: Optional[str] = typer.Option(None, "--data", metavar="SPEC",
                                       help="data spec (default: the one recorded in the model)"),
    data_root: Optional[str] = typer.Option(None, "--data-root", metavar="DIR",
                                            help="folder holding torchvision's files (default: the one recorded in the "
                                                 "model)"),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="NAME",
                                       help="architecture of a bare state_dict (default: none)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing on success"),
) -> None:
    """Forget a set of training examples and write the unlearned model."""
    from audit.unlearn import unlearn_command

    unlearn_command(model, forget=forget, method=method, epochs=epochs, seed=seed, out=out, data=data,
                    data_root=data_root, arch=arch, quiet=quiet)


@app.command(cls=_Command, short_help="Regenerate the HTML, PDF and JUnit reports from results.json alone.")
def report(
    results: Path = typer.Argument(..., metavar="RESULTS", help="a results.json written by audit run"),
    fmt: str = typer.Option("html,pdf,junit", "--format", metavar="FORMATS", help="comma-separated: html, pdf, junit"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR",
                                       help="output folder (default: beside results.json)"),
    sign_key_env: Optional[str] = typer.Option(None, "--sign-key-env", metavar="VAR", help="verify the document's "
                                               "HMAC-SHA256 signature with the key in this environment variable"),
) -> None:
    """Regenerate the reports from results.json alone, after checking that every verdict follows from its evidence."""
    from audit.gates import check_document
    from reports import ReportError, read_results, render_files

    try:
        doc, text = read_results(results)
    except ReportError as exc:
        raise InputError(str(exc)) from None
    if sign_key_env:
        from audit.signing import verify

        verify(doc, text, sign_key_env, str(results))
    check_document(doc, str(results))  # a forged verdict is refused, never rendered with a PASS badge
    try:
        written = render_files(doc, [f.strip() for f in fmt.split(",") if f.strip()], out or results.parent,
                               base_dir=results.parent)
    except ReportError as exc:
        raise InputError(str(exc)) from None
    except (OSError, RuntimeError) as exc:
        raise StepError(f"writing the report failed: {exc}") from None
    for path in written:
        typer.echo(f"wrote {printable(path)}")


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@app.command("run", cls=_Command,
             short_help="Unlearn each forget target (or take a model unlearned elsewhere), attack it, give a verdict.")
def run_cmd(
    model: Path = typer.Argument(..., metavar="MODEL",
                                 help="the trained model.pt (or TorchScript / state_dict with --arch)"),
    forget: Optional[list[str]] = typer.Option(None, "--forget", "-f", metavar="SPEC",
                                               help="a forget target: class=3 | class=3,7 | samples=PATH | "
                                                    "random=0.01@SEED; repeat for several"),
    method: Optional[str] = typer.Option(None, "--method", metavar="[auto|amnesiac|relabel|finetune|retrain|none]",
                                         help="auto (default: amnesiac when the update log covers the target, else "
                                              "relabel) | amnesiac | relabel | finetune | retrain | none (the no-op "
                                              "control, which must not pass)"),
    original: Optional[Path] = typer.Option(None, "--original", metavar="PATH",
                                            help="audit MODEL as unlearned elsewhere from this original model.pt; no "
                                                 "unlearning step runs, so --method does not apply"),
    reference: Optional[str] = typer.Option(None, "--reference", metavar="[auto|pool|retrain|none]",
                                            help="what each model is compared with: auto (default: the shared pool of "
                                                 "reference models for sample requests, no retraining; retrained "
                                                 "models for class requests) | pool | retrain (models retrained "
                                                 "without each request) | none"),
    retrains: Optional[int] = typer.Option(None, "--retrains", metavar="INTEGER",
                                           help="models retrained without the forget set, with seeds other than the "
                                                "model's (default 3; cached; class requests and --reference retrain)"),
    alpha: Optional[float] = typer.Option(None, "--alpha", metavar="FLOAT",
                                          help="significance level of the tests (default 0.05)"),
    max_residual: Optional[float] = typer.Option(None, "--max-residual", metavar="FLOAT",
                                                 help="a pass needs the residual leakage's 95% upper bound below this "
                                                      "(default 0.5)"),
    inconclusive: Optional[str] = typer.Option(None, "--inconclusive", metavar="[fail|pass]",
                                               help="what an inconclusive target does to the gates: fail (default) | "
                                                    "pass"),
    max_memorised_auc: Optional[float] = typer.Option(None, "--max-memorised-auc", metavar="FLOAT",
                                                      help="'not memorised' needs the original's membership AUC's 95% "
                                                           "upper bound at most this (default 0.6; 0.5 is no signal)"),
    not_memorised: Optional[str] = typer.Option(None, "--not-memorised", metavar="[pass|fail]",
                                                help="what a not-memorised target does to the gates: pass (default) | "
                                                     "fail"),
    attacks: Optional[str] = typer.Option(None, "--attacks", metavar="FAMILIES", help="mia,inversion"),
    # The attack names and both defaults are attacks.registry's (ATTACKS, DEFAULT_ATTACKS, DEFAULT_REFERENCE_MODELS),
    # written out so that the command line starts without importing torch; tests/audit/test_attack_defaults.py
    # checks that they agree.
    mia: Optional[str] = typer.Option(None, "--mia", metavar="ATTACKS",
                                      help="membership attacks: "
                                           "loss,lira_online,lira_offline,rmia,rmia_offline,shadow,label_only (default "
                                           "loss,lira_online,rmia)"),
    reference_models: Optional[int] = typer.Option(None, "--reference-models", metavar="INTEGER",
                                                   help="reference/shadow models trained on subsets of the auditor's "
                                                        "data (default 16; cached)"),
    data: Optional[str] = typer.Option(None, "--data", metavar="SPEC",
                                       help="data spec (default: the one recorded in the model): digits | mnist | "
                                            "fashion-mnist | cifar10 | cifar100 | npz:PATH | folder:PATH"),
    data_root: Optional[str] = typer.Option(None, "--data-root", metavar="DIR",
                                            help="folder holding torchvision's files (default: the one recorded in the "
                                                 "model)"),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="NAME",
                                       help="architecture of a bare state_dict: smallcnn | resnet18 | a torchvision "
                                            "name | your own package.module:factory"),
    arch_args: Optional[str] = typer.Option(None, "--arch-args", metavar="JSON",
                                            help="JSON keyword arguments for your factory, e.g. '{\"width\": 32}'"),
    code_path: Optional[list[str]] = typer.Option(None, "--code-path", metavar="DIR",
                                                  help="folder added to the import path for --arch and --train; "
                                                       "repeatable"),
    train_fn: Optional[str] = typer.Option(None, "--train", metavar="MODULE:FUNCTION",
                                           help="your training function package.module:fit, called as fit(model, x, y, "
                                                "seed=S) for your full recipe and with epochs=N for a shorter run; "
                                                "returns the model"),
    normalize: Optional[str] = typer.Option(None, "--normalize", metavar="MEAN,STD",
                                            help="input normalisation of a file that does not record it: MEAN,STD or "
                                                 "M1,M2,M3/S1,S2,S3 (default: none, said aloud)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="INTEGER",
                                         help="recipe for a file without one: epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="INTEGER",
                                             help="recipe: batch size (default 64)"),
    lr: Optional[float] = typer.Option(None, "--lr", metavar="FLOAT", help="recipe: learning rate (default 0.001)"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", metavar="[adam|sgd]",
                                            help="recipe: adam (default) | sgd"),
    momentum: Optional[float] = typer.Option(None, "--momentum", metavar="FLOAT",
                                             help="recipe: SGD momentum (default 0.9)"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", metavar="FLOAT",
                                                 help="recipe: weight decay (default 0)"),
    lr_schedule: Optional[str] = typer.Option(None, "--lr-schedule", metavar="SCHEDULE",
                                              help="recipe: none (default) | cosine | step:EPOCHS:GAMMA"),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="recipe: random shifts (and flips "
                                           "for colour images) (default off)"),
    executor: Optional[str] = typer.Option(None, "--executor", metavar="[local|ray]",
                                           help="where reference models and retrains train: local (default) | ray"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDRESS",
                                              help="join a Ray cluster: auto | HOST:PORT (default: start a local Ray "
                                                   "for this command)"),
    cpus_per_model: Optional[float] = typer.Option(None, "--cpus-per-model", metavar="FLOAT",
                                                   help="CPUs (torch threads) of every model the audit trains, local "
                                                        "or on Ray (default 1)"),
    gpus_per_model: Optional[float] = typer.Option(None, "--gpus-per-model", metavar="FLOAT",
                                                   help="GPUs per training task (default 0; 1 places one model per "
                                                        "GPU)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="output folder (default ./audit-out)"),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="INTEGER",
                                       help="seed of every random choice of the audit (default 0)"),
    fail_on: Optional[list[str]] = typer.Option(None, "--fail-on", metavar="EXPR",
                                                help="extra gate besides the verdict, e.g. "
                                                     "'residual_leakage_upper>0.5'; repeatable"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="PATH",
                                          help="TOML file: the table tool.audit, or top-level keys (default: "
                                               "./audit.toml or ./pyproject.toml, said in one line)"),
    isolated: bool = typer.Option(False, "--isolated", help="ignore every config file (./audit.toml, "
                                  "./pyproject.toml): use it to audit a repository you do not control"),
    fmt: str = typer.Option("html,pdf", "--format", metavar="FORMATS",
                            help="reports to write, comma-separated: html, pdf, junit (or none)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only failures"),
    as_json: bool = typer.Option(False, "--json", help="print the results document to stdout"),
    sign_key_env: Optional[str] = typer.Option(None, "--sign-key-env", metavar="VAR", help="sign results.json "
                                               "(HMAC-SHA256) with the key in this environment variable, for "
                                               "`audit gate --sign-key-env VAR`"),
) -> None:
    """Unlearn each forget target (or audit a model unlearned elsewhere), test the original and the unlearned
    model against models that never saw the target, and give each target a verdict: pass, fail, not memorised
    or inconclusive."""
    from audit.config import read_settings
    from audit.harness import run

    source, refused = read_settings(config, isolated=isolated).without_loosening()
    settings = dict(source.values)
    cli = {"forget": forget or None, "method": method, "reference": reference, "original": original,
           "retrains": retrains, "alpha": alpha, "max_residual": max_residual, "inconclusive": inconclusive,
           "max_memorised_auc": max_memorised_auc, "not_memorised": not_memorised,
           "attacks": _split([attacks]) if attacks else None,
           "mia_attacks": _split([mia]) if mia else None, "reference_models": reference_models, "data": data,
           "data_root": data_root, "out": out, "seed": seed, "fail_on": fail_on or None}
    for key in ("attacks", "mia_attacks"):
        if isinstance(settings.get(key), str):
            settings[key] = _split([settings[key]])
    flags = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "momentum": momentum,
             "weight_decay": weight_decay, "lr_schedule": lr_schedule, "augment": augment}
    recipe = {**(settings.pop("recipe", None) or {}), **{k: v for k, v in flags.items() if v is not None}}
    cli.update({"executor": executor, "ray_address": ray_address, "cpus_per_model": cpus_per_model,
                "gpus_per_model": gpus_per_model, "arch": arch, "arch_args": arch_args, "code_path": code_path or None, "train": train_fn,
                "normalize": normalize, "recipe": recipe or None, "sign_key_env": sign_key_env})
    merged = {**settings, **{k: v for k, v in cli.items() if v is not None}}
    _announce_settings(source, cli, merged, model, quiet, refused)
    forget_specs = merged.pop("forget", None) or []
    formats = [] if fmt.strip() in ("", "none") else _split([fmt])
    if as_json:
        from audit.summary import print_summary

        with _stdout_for_the_document_alone() as write:  # stdout: the document alone; failures to stderr
            result = run(model, forget_specs, show_progress=False, formats=formats,
                         command=" ".join(["audit"] + sys.argv[1:]), **merged)
            write(result.document.to_json(indent=2))
            print_summary(result.document, quiet=True, out=result.out)
    else:
        result = run(model, forget_specs, show_progress=not quiet, formats=formats,
                     command=" ".join(["audit"] + sys.argv[1:]), **merged)
        from audit.summary import print_summary

        print_summary(result.document, quiet=quiet, out=result.out, assumptions_said=True)
    raise typer.Exit(result.exit_code)


def _announce_settings(source, cli: dict, merged: dict, model: Path, quiet: bool,
                       refused: dict[str, str] | None = None) -> None:
    """Say which file supplied which settings (one line), and drop the file's ``arch`` and
    ``arch_args`` where every model file records its architecture, so that a factory the run
    does not use is never imported."""
    from audit.modelfile import records_architecture

    if source.path is None:
        return
    ignored: dict[str, str] = {k: why for k, why in (refused or {}).items() if cli.get(k) is None}
    if cli.get("arch") is None and "arch" in source.values:
        files = [model] + ([Path(merged["original"])] if merged.get("original") else [])
        if all(records_architecture(f) for f in files):
            for key in ("arch", "arch_args"):
                if key in source.values and cli.get(key) is None:
                    merged.pop(key, None)
                    ignored[key] = "the model file records its architecture"
    taken = [k for k in source.keys if k not in ignored and (cli.get(k) is None or k == "recipe")]
    line = source.announcement(taken, ignored)
    # A file nobody named is said in one line even with --quiet: what it set, and what it was not let set.
    if line and (not source.named or not quiet):
        typer.echo(f"note: {printable(line)}", err=True)


@app.command(cls=_Command,
             short_help="Re-apply the verdicts and gates to an earlier run's results.json, recomputing every test.")
def gate(
    results: Path = typer.Argument(..., metavar="RESULTS", help="results.json of an earlier audit run"),
    fail_on: Optional[list[str]] = typer.Option(None, "--fail-on", metavar="EXPR", help="gate expression, added to the "
                                                "gates recorded in results.json; repeatable"),
    inconclusive: Optional[str] = typer.Option(None, "--inconclusive", metavar="[fail|pass]",
                                               help="fail | pass (default: the policy recorded in results.json)"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="PATH",
                                          help="TOML file: the table tool.audit, or top-level keys"),
    replace_recorded_gates: bool = typer.Option(False, "--replace-recorded-gates", help="apply the gates of --fail-on "
                                                "(else of the config file) instead of those recorded in results.json"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only failures"),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="also write the gates' outcome as "
                                         "JUnit XML to FILE (written under a temporary name, then renamed)"),
    sign_key_env: Optional[str] = typer.Option(None, "--sign-key-env", metavar="VAR", help="refuse a document "
                                               "whose HMAC-SHA256 signature the key in this environment variable "
                                               "does not give (written by `audit run --sign-key-env VAR`)"),
) -> None:
    """Apply the verdicts and gates to an earlier run's results.json; every test is first recomputed from
    the inputs the document records, and a document whose figures or verdicts disagree is refused."""
    from audit.config import read_settings
    from audit.gates import check_recorded_verdict, gate_target, plan_gates, verdict
    from audit.summary import print_summary
    from reports import ReportError, read_results

    if junit is not None and (junit.is_dir() or (junit.parent != Path("") and not junit.parent.is_dir())):
        what = "is a folder" if junit.is_dir() else "is in a folder that does not exist"
        raise InputError(f"--junit {printable(junit)} {what}; name a file, e.g. --junit gate-junit.xml")
    found = read_settings(config)
    settings, source = dict(found.values), found.path
    try:
        doc, text = read_results(results)
    except ReportError as exc:
        raise InputError(str(exc)) from None
    if sign_key_env:
        from audit.signing import verify

        verify(doc, text, sign_key_env, str(results))
    plan = plan_gates(doc.config, fail_on, inconclusive, settings, source, replace_recorded_gates,
                      named=found.named, signed=bool(sign_key_env))
    for i, target in enumerate(doc.targets):
        check_recorded_verdict(target, doc.config, f"{results}: targets[{i}]")
    for line in plan.notices:
        stderr.print(f"note: {printable(line)}", markup=False, highlight=False, soft_wrap=True)
    for target in doc.targets:
        gate_target(target, plan.gates, plan.policy, doc.config.not_memorised or "pass")
    doc.verdict, doc.exit_code = verdict(doc.targets)
    code = doc.exit_code
    if not doc.targets:
        typer.echo(f"FAIL {printable(results)}: the document holds no target, so nothing was audited; it fails closed", err=True)
    if junit is not None:
        from audit.atomic import write_text
        from reports import render_junit

        try:
            write_text(junit, render_junit(doc))  # temporary name, then renamed: never half-written
        except OSError as exc:
            raise InputError(f"--junit {printable(junit)}: cannot write it ({exc.strerror or exc})") from None
    print_summary(doc, quiet=quiet, out=None)
    raise typer.Exit(code)


@app.command(cls=_Command, short_help="Print the JSON Schema of results.json.")
def schema() -> None:
    """Print the JSON Schema of results.json (the same as docs/results.schema.json), to validate results in CI."""
    from reports.document import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command(cls=_Command, short_help="Train on the embedded digits, forget class 3, audit and report.")
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", metavar="DIR",
                             help="folder for the model, its log and the audit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only failures"),
) -> None:
    """The main job on the embedded digits: train with an update log, forget class 3, audit, report."""
    from audit.data import load_dataset
    from audit.harness import run
    from audit.summary import print_summary
    from audit.training import train_model
    from unlearning import TrainConfig

    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.pt"
    typer.echo(f"1/2 training smallcnn on digits, recording the batches of class 3 -> {model_path}")
    res = train_model(load_dataset("digits"), model_path, "smallcnn", TrainConfig(epochs=20, seed=0),
                      record="class=3", show_progress=not quiet)
    typer.echo(f"    test accuracy {res.model_file.metrics['test_accuracy']:.1%}, update log "
               f"{res.log_batches}/{res.total_steps} batches, {_mb(res.log_bytes)}")
    typer.echo("2/2 auditing: forget class 3 with amnesiac unlearning, attack before/after/retrained reference")
    result = run(model_path, ["class=3"], method="auto", out=out / "audit", fail_on=["residual_leakage_upper>0.5"],
                 show_progress=not quiet, command="audit demo")
    print_summary(result.document, quiet=quiet, out=result.out, assumptions_said=True)
    raise typer.Exit(result.exit_code)


def _one_line(exc: BaseException) -> str:
    """Failures print as one line, whatever newlines a library put in its message, with control and
    direction characters escaped (a name or path could otherwise inject a CI workflow command)."""
    return printable(" ".join(str(exc).split()))


def _interrupt(signum: int, frame) -> None:
    # Later signals must not cut the clean-up of the first short: ignore them from now on.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside; the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _warnings_on_one_line() -> Iterator[None]:
    """Each warning as one ``warning: ...`` line on stderr, not Python's two-line format."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        stderr.print(f"warning: {_one_line(message)}", markup=False, highlight=False, soft_wrap=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def main() -> None:
    """Entry point: one clear line and a documented exit code for every failure and interrupt.

    A run on Ray runs in a child process watched by this one (:mod:`audit.supervise`): Ray's
    native code may end the process that drives it, which must still exit 3 with one line."""
    from audit.supervise import can_supervise, run_supervised, wants_ray

    if can_supervise() and wants_ray(sys.argv[1:]):
        run_supervised(_main_handled, lambda line: stderr.print(f"error: {line}", markup=False, highlight=False,
                                                                soft_wrap=True))
    _main_handled()


def _main_handled() -> None:
    try:
        plain_lines_without_terminal(True)  # CI logs get a line per finished model or step
        with _signals_raise(), _warnings_on_one_line():
            _main()
    except Interrupted as exc:
        stderr.print(f"error: {exc}; files being written were removed, earlier outputs are as they were",
                     markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    finally:
        plain_lines_without_terminal(False)  # a caller in the same process (a test) keeps the library's silence


def _click_exceptions() -> tuple[type, ...]:
    """Click's usage-error class: typer >= 0.22 vendors click as typer._click, and a separately
    installed click (Ray brings one) is another class; accept whichever exist."""
    classes: list[type] = []
    try:
        from typer._click.exceptions import ClickException as vendored

        classes.append(vendored)
    except ModuleNotFoundError:
        pass
    try:
        from click import ClickException as standalone

        classes.append(standalone)
    except ModuleNotFoundError:
        pass
    return tuple(classes)


def _main() -> None:
    try:
        # standalone_mode=False: click returns a command's typer.Exit code instead of exiting.
        code = app(standalone_mode=False, prog_name="audit")  # also under python -c or a test runner
        sys.exit(code if isinstance(code, int) else 0)
    except AuditError as exc:
        stderr.print(f"error: {_one_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        code = getattr(exc, "code", code)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        stderr.print("error: aborted", markup=False)
        sys.exit(2)
    except KeyboardInterrupt:  # SIGINT where _signals_raise could not install its handler
        stderr.print("error: interrupted by SIGINT; files being written were removed, earlier outputs are as they "
                     "were", markup=False, highlight=False, soft_wrap=True)
        sys.exit(128 + signal.SIGINT)
    except Exception as exc:  # noqa: BLE001 - fail closed with one line; AUDIT_DEBUG=1 shows the traceback
        if isinstance(exc, _click_exceptions()):  # usage errors: unknown option, missing argument
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # bare `audit`: the help text
            else:
                ctx = getattr(exc, "ctx", None)
                where = ctx.command_path if ctx is not None else "audit"
                stderr.print(f"error: {_one_line(exc.format_message())} (try '{where} --help')", markup=False,
                             highlight=False, soft_wrap=True)
            sys.exit(2)
        if os.environ.get("AUDIT_DEBUG"):
            raise
        stderr.print(f"error: a step failed: {type(exc).__name__}: {_one_line(exc)} (set AUDIT_DEBUG=1 for the traceback)",
                     markup=False, soft_wrap=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
