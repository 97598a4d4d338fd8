"""The user's own code, by their explicit choice: ``--arch package.module:factory`` and
``--train package.module:fit``, with ``--arch-args JSON`` and ``--code-path DIR``.

This runs code the user names on the command line (or in ``[tool.audit]``), from their own
package or folder, never code carried inside a model file: weights still load with
``torch.load(weights_only=True)`` or from safetensors.

- ``factory(**arch_args) -> nn.Module``: a fresh, untrained network; its input is what
  ``--normalize`` produces from images in [0, 1] (or the images themselves).
- ``fit(model, x, y, *, seed, epochs=None) -> nn.Module``: see
  :data:`unlearning.training.TrainFunction`. The toolkit calls it to train reference models
  and retrains (without ``epochs``: the user's full recipe, their own default), and, unless
  told otherwise, for relabel and finetune (a few epochs).

The factory is imported only when a model needs it (a bare state_dict or an archive), not
for a toolkit model.pt, which records its architecture. Every call into the user's code
goes through :class:`UserFunction`: whatever it raises, ``SystemExit`` included, becomes a
:class:`UserCodeError` (a failed step, exit 3) naming the function, its arguments and the
file:line of the user's frame; only interrupts (Ctrl-C, SIGTERM) pass through as they are.
:func:`code_identity` names a user's function for cache keys and provenance, and
:func:`normalization_or_identity` gives the input normalisation of a file that records none.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import multiprocessing
import signal
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from audit.errors import InputError, Interrupted, StepError


class UserCodeError(StepError):
    """The user's own function raised or exited: a failed step (exit 3), recorded in results.json."""


def _describe_value(value: Any) -> str:
    """An argument as one short word: tensors by shape and dtype, modules by class."""
    import torch

    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        return f"<tensor {'x'.join(map(str, value.shape)) or 'scalar'} {dtype}>"
    if isinstance(value, torch.nn.Module):
        return f"<{type(value).__name__}>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _user_frame(exc: BaseException, fn: Callable) -> str | None:
    """file:line of the deepest traceback frame in the user's function's file (else the deepest frame)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    try:
        source = inspect.getsourcefile(inspect.unwrap(fn))
    except (TypeError, ValueError):
        source = None
    own = [f for f in frames if source and Path(f.filename) == Path(source)]
    frame = (own or frames)[-1]
    return f"{frame.filename}:{frame.lineno}"


class UserFunction:
    """The user's factory or training function, called so that a failure says whose it was.

    Transparent to :func:`inspect.signature`, :func:`inspect.getsource` and the cache key
    (``__wrapped__``, ``__module__``, ``__qualname__`` are the user's), and picklable for Ray.
    """

    def __init__(self, fn: Callable, what: str):
        self.fn = fn
        self.what = what  # e.g. "--train mynet:fit" or "model_factory"
        # The names only (not the function's or class's __dict__, which may not pickle).
        functools.update_wrapper(self, fn, updated=())

    def __repr__(self) -> str:
        return repr(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _IN_CHILD or "fork" not in multiprocessing.get_all_start_methods():
            return self._call_here(args, kwargs)
        if not _modules(args):  # a factory: tried in a child first, then built here (see below)
            _call_in_child(self, args, kwargs)
            return _call_restoring(self, args, kwargs)
        return _call_in_child(self, args, kwargs)

    def _call_here(self, args: tuple, kwargs: dict) -> Any:
        try:
            return self.fn(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted, UserCodeError):
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: the user's code never ends the audit
            where = _user_frame(exc, self.fn)
            text = " ".join(str(exc).split())[:200]
            raise UserCodeError(f"your {self.what} raised {type(exc).__name__}{': ' + text if text else ''} "
                                f"when called as {self.call_text(args, kwargs)}{' at ' + where if where else ''}") \
                from exc

    def call_text(self, args: tuple, kwargs: dict) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        call = ", ".join([_describe_value(a) for a in args] + [f"{k}={_describe_value(v)}" for k, v in kwargs.items()])
        return f"{name}({call})"


# --- The user's code in a process of its own -----------------------------------------------------
# A training function (a call given a network) runs in a child forked for it: the arguments are
# there without pickling, and whatever the code does to its process (os._exit, threads that never
# end, torch.set_num_threads, os.chdir, torch's global state) ends with the child. Only tensors
# come back: a JSON header line, then the trained networks' state_dicts saved by torch and read
# with ``weights_only=True`` (nothing is unpickled), loaded into the parent's own networks. A
# child that dies without a result is a failed step naming the function. A factory (a call given
# no network) returns a network that could only come back pickled: it is called in a child first
# (one that ends its process or raises is caught there), then in the audit's process, with torch's
# thread count, default dtype and the working directory restored after it.
_IN_CHILD = False


def _call_restoring(user: "UserFunction", args: tuple, kwargs: dict) -> Any:
    import os

    import torch

    threads, dtype, cwd = torch.get_num_threads(), torch.get_default_dtype(), os.getcwd()
    try:
        return user._call_here(args, kwargs)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        if os.getcwd() != cwd:
            os.chdir(cwd)


def _modules(args: tuple) -> list[int]:
    import torch

    return [i for i, a in enumerate(args) if isinstance(a, torch.nn.Module)]


def _result_message(user: "UserFunction", args: tuple, result: Any) -> bytes:
    """What the child sends back: the header naming which argument was returned, then its weights."""
    import io

    import torch

    from unlearning.training import check_returned_model, function_name

    modules = _modules(args)
    if not modules:  # a factory's trial call: it returned (what, its caller checks in the audit's process)
        return _message("built")
    returned = None
    if result is not None:
        returned = next((i for i in modules if result is args[i]), None)
        if returned is None:  # another object: refused as train_with refuses it, unless the same layout
            first = args[modules[0]]
            layout = {k: tuple(v.shape) for k, v in first.state_dict().items()}
            check_returned_model(function_name(user), layout, result)  # TypeError: another network
            returned = modules[0]
    nets = {i: (result if i == returned and result is not None else args[i]) for i in modules}
    states = {f"{i}/{k}": v.detach().cpu() if isinstance(v, torch.Tensor) else v
              for i, net in nets.items() for k, v in net.state_dict().items()}
    header = {"kind": "states", "returned": returned, "in_place": result is None,
              "training": {str(i): [m.training for m in net.modules()] for i, net in nets.items()}}
    buffer = io.BytesIO()
    torch.save(states, buffer)
    return json.dumps(header).encode() + b"\n" + buffer.getvalue()


def _message(kind: str, text: str = "") -> bytes:
    return json.dumps({"kind": kind, "text": text}).encode() + b"\n"


def _child_main(user: "UserFunction", writer, args: tuple, kwargs: dict) -> None:
    import os
    import signal

    global _IN_CHILD
    _IN_CHILD = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the audit (the parent) handles interrupts
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the audit
    except (OSError, AttributeError):
        pass
    _pin_torch_threads(user)
    try:
        try:
            payload = _result_message(user, args, user._call_here(args, kwargs))
        except UserCodeError as exc:
            payload = _message("error", str(exc))
        except TypeError as exc:  # another network returned (as train_with says it)
            payload = _message("type_error", str(exc))
        except Exception as exc:  # noqa: BLE001 - the weights cannot be saved
            payload = _message("error", f"your {user.what} returned a network whose weights cannot be sent "
                                              f"back to the audit ({type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())[:160]}) when called as "
                                              f"{user.call_text(args, kwargs)}")
        writer.send_bytes(payload)
        writer.close()
    finally:
        os._exit(0)  # never Python's shutdown: it would wait for threads the user's code left running


def _pin_torch_threads(user: "UserFunction") -> None:
    """In the forked child, torch runs on one thread, whatever the user's code asks. The OpenMP threads of the
    process it was forked from do not exist here, yet the OpenMP runtime thinks they do: any count above one
    (``--cpus-per-model 2``, or ``torch.set_num_threads(4)`` in the user's code) waited for ever on them once
    that process had used them (issue 23, severe 3). One thread is safe, and the same under either executor.
    The user's call is said and left without effect."""
    import torch

    torch.set_num_threads(1)

    def pinned(count: int) -> None:
        if count != 1:
            warnings.warn(f"your {user.what} called torch.set_num_threads({count}), which the audit ignores: it runs "
                          "in a process forked from the audit, where torch can use one thread only (more waited for "
                          "ever)", stacklevel=2)

    torch.set_num_threads = pinned  # this process is the child's alone and ends with the call


def _apply_result(payload: bytes, args: tuple) -> Any:
    """The child's message applied to the parent's own networks: weights and train/eval modes."""
    import io

    import torch

    head, _, body = payload.partition(b"\n")
    header = json.loads(head)
    if header["kind"] == "error":
        raise UserCodeError(header["text"])
    if header["kind"] == "type_error":
        raise TypeError(header["text"])
    if header["kind"] == "built":
        return None
    states = torch.load(io.BytesIO(body), weights_only=True)
    for i in _modules(args):
        net = args[i]
        prefix = f"{i}/"
        net.load_state_dict({k[len(prefix):]: v for k, v in states.items() if k.startswith(prefix)})
        for module, training in zip(net.modules(), header["training"][str(i)]):
            module.training = training
    return None if header["in_place"] else args[header["returned"]]


def _call_in_child(user: "UserFunction", args: tuple, kwargs: dict) -> Any:
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(user, writer, args, kwargs), daemon=True)
    process.start()
    writer.close()
    payload = None
    try:
        while payload is None:
            if reader.poll(0.05):
                try:
                    payload = reader.recv_bytes()
                except EOFError:
                    break
            elif not process.is_alive() and not reader.poll(0):
                break
    finally:
        if payload is None and process.is_alive():
            process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
        reader.close()
    if payload is None and process.exitcode == -signal.SIGABRT:
        # torch's OpenMP thread pool is not fork-safe once the parent has used it: the child's autograd
        # worker can abort in set_num_threads ("Invalid thread pool") before the user's code fails. Run
        # the call here instead, as before round 3, rather than fail an audit the user's code did not break.
        warnings.warn(f"your {user.what} could not run in a process of its own (torch aborted the forked child); "
                      "it ran in the audit's process", stacklevel=2)
        return user._call_here(args, kwargs)
    if payload is None:
        code = process.exitcode
        how = (f"was killed by signal {-code}" if code is not None and code < 0 else
               f"ended its process (exit status {code}, e.g. os._exit)")
        raise UserCodeError(f"your {user.what} {how} without returning a result when called as "
                            f"{user.call_text(args, kwargs)}")
    return _apply_result(payload, args)


def guard(fn: Callable | None, what: str) -> Callable | None:
    """``fn`` as a :class:`UserFunction` (None stays None, a guarded function is not wrapped twice)."""
    if fn is None or isinstance(fn, UserFunction):
        return fn
    if isinstance(fn, functools.partial):  # keep the partial outermost: cache keys read its keywords
        return functools.partial(guard(fn.func, what), *fn.args, **fn.keywords)
    return UserFunction(fn, what)


def is_reference(text: str | None) -> bool:
    """Whether ``text`` names user code (``package.module:name``) rather than a built-in architecture."""
    return bool(text) and ":" in text  # type: ignore[operator]


def import_object(ref: str, code_paths: list[str] | None, flag: str) -> Any:
    """``package.module:name`` (``name`` may be dotted) imported from ``code_paths`` then sys.path."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr or not all(part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        raise InputError(f"{flag} {ref!r} is not of the form package.module:name")
    for folder in reversed(code_paths or []):
        path = Path(folder)
        if not path.is_dir():
            raise InputError(f"--code-path {folder} is not a folder; give the folder that holds your package")
        if str(path.resolve()) not in sys.path:
            sys.path.insert(0, str(path.resolve()))
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InputError(f"{flag} {ref}: module {exc.name!r} cannot be imported; add its folder with "
                         "--code-path DIR or install your package") from None
    except (KeyboardInterrupt, Interrupted):
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's module failed (or called sys.exit) while importing
        raise InputError(f"{flag} {ref}: importing {module_name} failed ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{flag} {ref}: {module_name} has no {attr!r}; check the name after the colon")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"{flag} {ref} is not a function or class")
    if inspect.isbuiltin(obj):  # os:system, subprocess-like C functions: never a factory or a training loop
        raise InputError(f"{flag} {ref} is a built-in function, not your model factory or training function; "
                         "name a function or class of your own package")
    return obj


def check_fit_signature(fit: Callable, ref: str) -> None:
    """``fit(model, x, y, *, seed[, epochs])``: refuse a function that cannot take these arguments."""
    try:
        sig = inspect.signature(fit)
    except (TypeError, ValueError):
        return  # a builtin or C function: its call will say
    try:
        sig.bind(object(), object(), object(), seed=0, epochs=None)
    except TypeError as exc:
        raise InputError(f"--train {ref} has the signature {sig}, which cannot be called as "
                         f"fit(model, x, y, *, seed, epochs=N) ({exc}); see docs/own-model.md, 'From the command line'") from None
    try:
        sig.bind(object(), object(), object(), seed=0)
    except TypeError as exc:
        raise InputError(f"--train {ref} has the signature {sig}, which cannot be called as "
                         f"fit(model, x, y, *, seed) for your full recipe ({exc}); give epochs a default "
                         "(e.g. epochs=None); see docs/own-model.md, 'From the command line'") from None


def parse_arch_args(text: str | dict | None) -> dict:
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--arch-args is not valid JSON ({exc.msg}); write e.g. '{{\"width\": 32}}'") from None
    if not isinstance(value, dict):
        raise InputError("--arch-args must be a JSON object of keyword arguments, e.g. '{\"width\": 32}'")
    return value


def parse_normalize(text: str | list | None, channels: int | None = None) -> tuple[list[float], list[float]] | None:
    """``MEAN,STD`` (one value for every channel) or ``M1,M2,M3/S1,S2,S3`` (per channel)."""
    if text is None or text == "":
        return None
    try:
        if isinstance(text, (list, tuple)):
            mean, std = [float(v) for v in text[0]], [float(v) for v in text[1]]
        elif "/" in text:
            m, s = text.split("/", 1)
            mean, std = [float(v) for v in m.split(",")], [float(v) for v in s.split(",")]
        else:
            m, s = text.split(",")
            mean, std = [float(m)], [float(s)]
    except (ValueError, IndexError, TypeError):
        raise InputError(f"--normalize {text!r}: write MEAN,STD (e.g. 0.5,0.5) or per channel "
                         "M1,M2,M3/S1,S2,S3") from None
    if len(mean) != len(std) or not all(v > 0 for v in std) or not all(abs(v) < 1e6 for v in mean + std):
        raise InputError(f"--normalize {text!r}: as many means as standard deviations, every std above 0")
    if channels is not None and len(mean) == 1:
        mean, std = mean * channels, std * channels
    if channels is not None and len(mean) != channels:
        raise InputError(f"--normalize gives {len(mean)} values per statistic but the images have {channels} channels")
    return mean, std


def normalization_or_identity(user: "UserCode | None", channels: int, path: Path,
                              assumed: list[str]) -> tuple[list[float], list[float]]:
    """The input normalisation of a model file that does not record it: ``--normalize``, or
    an identity that is noted in ``assumed`` and said out loud (never assumed silently)."""
    given = parse_normalize(getattr(user, "normalize", None), channels)
    if given is not None:
        return given
    assumed.append(f"{path.name} records no input normalisation: assuming the network takes images in [0, 1] as "
                   "they are (mean 0, std 1); pass --normalize MEAN,STD if it was trained on normalised inputs")
    return [0.0] * channels, [1.0] * channels


def code_identity(fn) -> str | None:
    """Who a user's function is, for cache keys and provenance: module, name and a digest of
    its source (so that editing the factory or the training function retrains the cached
    models). A guarded function (:class:`UserFunction`) is the user's own function here."""
    if fn is None:
        return None
    if isinstance(fn, functools.partial):  # a factory with its --arch-args
        return f"{code_identity(fn.func)}{json.dumps(fn.keywords, sort_keys=True, default=str)}"
    name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(fn)
    return f"{name}@{hashlib.sha256(source.encode()).hexdigest()[:16]}"


@dataclass
class UserCode:
    """What the user's flags name: the factory, its arguments, the training function, the normalisation."""

    arch: str | None = None
    arch_args: dict = field(default_factory=dict)
    _factory: Callable | None = field(default=None, repr=False)
    train: str | None = None
    train_fn: Callable | None = None
    normalize: str | None = None
    code_paths: list[str] = field(default_factory=list)
    recipe: dict | None = None  # the declarative recipe (flags or [tool.audit.recipe]), TrainConfig.to_dict()

    @classmethod
    def load(cls, arch: str | None, arch_args: str | dict | None, train: str | None, normalize: str | None,
             code_paths: list[str] | None) -> "UserCode":
        """Import what is named and check it; InputError (one line) for anything that does not fit."""
        code = cls(arch=arch, arch_args=parse_arch_args(arch_args), train=train, normalize=normalize,
                   code_paths=list(code_paths or []))
        parse_normalize(normalize)  # the syntax now; the channel count once the data is known
        # The factory itself is imported by ``factory``, when a model needs it.
        if train:
            fit = import_object(train, code.code_paths, "--train")
            check_fit_signature(fit, train)
            code.train_fn = guard(fit, f"training function --train {train}")
        return code

    @property
    def names_factory(self) -> bool:
        """Whether ``--arch`` names the user's factory (package.module:factory)."""
        return is_reference(self.arch)

    @property
    def factory(self) -> Callable | None:
        """The user's factory with its ``--arch-args``, imported on first use: a toolkit
        model.pt records its architecture, so a factory it does not need is never imported."""
        if self._factory is None and self.names_factory:
            builder = import_object(self.arch, self.code_paths, "--arch")  # type: ignore[arg-type]
            self._factory = functools.partial(guard(builder, f"model factory --arch {self.arch}"), **self.arch_args)
        return self._factory

    def build(self):
        """One fresh network from the factory; its failures are the user's input errors."""
        factory = self.factory
        try:
            net = factory()  # type: ignore[misc]
        except UserCodeError as exc:  # the user's factory raised (or exited): bad input, found before any work
            raise InputError(f"{exc}; check the factory and --arch-args") from None
        import torch.nn as nn

        if not isinstance(net, nn.Module):
            raise InputError(f"--arch {self.arch} returned {type(net).__name__}, not an nn.Module")
        return net
