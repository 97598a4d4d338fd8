"""The ``audit`` command. Exit codes: 0 pass, 1 a gate failed, 2 bad usage or input,
3 an attack or a step failed (README, "Exit codes")."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from audit.errors import AuditError, InputError
from audit.progress import stderr

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make a trained network forget data, then measure what it still leaks.")


def _echo_json(doc: dict) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=False))


@app.command()
def train(
    data: str = typer.Option("digits", "--data", help="digits | mnist | fashion-mnist | cifar10 | cifar100 | npz:PATH | folder:PATH"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding torchvision's files"),
    arch: str = typer.Option("smallcnn", "--arch", help="smallcnn | resnet18 | a torchvision model name"),
    epochs: int = typer.Option(20, "--epochs"),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam | sgd"),
    seed: int = typer.Option(0, "--seed"),
    record: str = typer.Option("all", "--record", help="all | none | a forget spec: whose batches to record"),
    log_dtype: str = typer.Option("float32", "--log-dtype", help="float32 | float16 (half the bytes) | float64 (exact)"),
    out: Path = typer.Option(Path("model.pt"), "--out"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Train a model from scratch, recording the amnesiac update log."""
    from audit.data import load_dataset
    from audit.training import train_model
    from unlearning import TrainConfig

    ds = load_dataset(data, data_root)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    res = train_model(ds, out, arch, config, record=record, log_dtype=log_dtype, show_progress=not quiet)
    m = res.model_file.metrics
    log = (f"update log {res.model_file.log_dir} ({res.log_batches}/{res.total_steps} batches, "
           f"{_mb(res.log_bytes)})" if res.model_file.update_log else "no update log")
    if not quiet:
        typer.echo(f"wrote {out}: train accuracy {m['train_accuracy']:.1%}, test accuracy {m['test_accuracy']:.1%}, "
                   f"{log}, {res.seconds:.1f}s")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@app.command()
def info(
    model: Path = typer.Argument(..., help="model.pt, a TorchScript archive or a state_dict"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON document"),
    arch: Optional[str] = typer.Option(None, "--arch", help="architecture of a bare state_dict"),
    data: Optional[str] = typer.Option(None, "--data", help="data spec, to evaluate files that carry no metrics"),
    data_root: Optional[str] = typer.Option(None, "--data-root"),
) -> None:
    """Say what a model file is: architecture, data, recipe, accuracy, update log."""
    from audit.inspect import describe_model

    doc = describe_model(model, arch=arch, data=data, data_root=data_root)
    if as_json:
        _echo_json(doc)
        return
    from audit.inspect import format_description

    typer.echo(format_description(doc))


def main() -> None:
    """Entry point: one clear line and a documented exit code for every failure."""
    try:
        app(standalone_mode=False)
    except AuditError as exc:
        stderr.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        code = getattr(exc, "code", code)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        stderr.print("error: aborted", markup=False)
        sys.exit(2)
    except KeyboardInterrupt:
        stderr.print("error: interrupted", markup=False)
        sys.exit(3)
    except Exception as exc:  # noqa: BLE001 - fail closed with one line; AUDIT_DEBUG=1 shows the traceback
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        if os.environ.get("AUDIT_DEBUG"):
            raise
        stderr.print(f"error: a step failed: {type(exc).__name__}: {exc} (set AUDIT_DEBUG=1 for the traceback)",
                     markup=False, soft_wrap=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
