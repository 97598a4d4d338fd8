"""``audit run``: unlearn each forget target (or take a model unlearned elsewhere), test
the original and the unlearned model against retrained ones, reach a verdict per target
(pass, fail or inconclusive: :mod:`audit.scoring`), apply the gates, write the outputs.

Python API::

    import audit
    result = audit.run("model.pt", forget=["class=3"], fail_on=["residual_leakage_upper>0.5"])
    result.exit_code, result.targets[0].document["verdict"], result.document  # results.json
    audit.run("unlearned.pt", forget="class=3", original="model.pt")         # unlearned elsewhere
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import attacks
from attacks import registry
from attacks.registry import ATTACKS as MIA_ATTACKS
from attacks.registry import NEEDS_REFERENCE
from attacks.signals import cross_entropy

from audit.attacking import AttackContext, fault, membership_set, run_inversion, run_membership
from audit.data import load_dataset
from audit.errors import AuditError, InputError
from audit.forget import ForgetSet, parse_forget
from audit.forget_accuracy import accuracies
from audit.gates import Gate, gate_target, parse_gates
from audit.modelfile import ModelFile, load_model, say_assumptions
from audit.progress import progress_bar
from audit.scoring import DEFAULT_ALPHA, DEFAULT_MAX_RESIDUAL, Evidence, decide, membership_evidence, rate_evidence
from audit.training import load_data_for
from audit.unlearn import choose_method, unlearn

METHODS = ("auto", "amnesiac", "relabel", "finetune", "retrain", "none")
INCONCLUSIVE = ("fail", "pass")
DEFAULT_RETRAINS = 3
DEFAULT_REFERENCE_MODELS = registry.DEFAULT_REFERENCE_MODELS
DEFAULT_MIA = list(registry.DEFAULT_ATTACKS)
REFERENCES = ("retrain", "none")
ATTACK_FAMILIES = ("mia", "inversion")


@dataclass
class AuditOptions:
    """Everything ``audit run`` takes; the CLI, a config file and the Python API fill it."""

    model: Path
    forget: list[str]
    method: str = "auto"
    reference: str = "retrain"
    attacks: list[str] = field(default_factory=lambda: list(ATTACK_FAMILIES))
    mia_attacks: list[str] = field(default_factory=lambda: list(DEFAULT_MIA))
    reference_models: int = DEFAULT_REFERENCE_MODELS
    retrains: int = DEFAULT_RETRAINS
    alpha: float = DEFAULT_ALPHA
    max_residual: float = DEFAULT_MAX_RESIDUAL
    inconclusive: str = "fail"
    original: Path | None = None
    arch_args: str | dict | None = None
    code_path: list[str] | str | None = None
    train: str | None = None
    normalize: str | None = None
    recipe: dict | None = None
    assumptions: list[str] = field(default_factory=list)
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_model: float = 1.0
    gpus_per_model: float = 0.0
    data: str | None = None
    data_root: str | None = None
    arch: str | None = None
    out: Path | None = Path("audit-out")
    seed: int = 0
    fail_on: list[str] = field(default_factory=list)
    inversion_iterations: int = 400
    cache_dir: Path | None = None
    show_progress: bool = True
    formats: list[str] = field(default_factory=lambda: ["html", "pdf"])
    command: str = ""

    def validate(self) -> list[Gate]:
        if not self.forget:
            raise InputError("nothing to forget: pass at least one --forget SPEC (e.g. --forget class=3)")
        if len(set(self.forget)) != len(self.forget):
            twice = next(f for f in self.forget if self.forget.count(f) > 1)
            raise InputError(f"--forget {twice} is given twice; each target once")
        if self.reference_models < 1:
            raise InputError("--reference-models must be a positive whole number")
        if isinstance(self.retrains, bool) or not isinstance(self.retrains, int) or self.retrains < 1:
            raise InputError(f"--retrains must be at least 1 (the retrained models measure model-to-model spread), "
                             f"not {self.retrains}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 1:
            raise InputError(f"--alpha must lie strictly between 0 and 1 (a significance level such as 0.05), "
                             f"not {self.alpha}")
        if (isinstance(self.max_residual, bool) or not isinstance(self.max_residual, (int, float))
                or not 0 < self.max_residual <= 1):
            raise InputError(f"--max-residual must lie in (0, 1] (the share of the original's membership signal a "
                             f"pass may leave, at 95% confidence, such as 0.5), not {self.max_residual}")
        if self.executor not in ("local", "ray"):
            raise InputError(f"--executor {self.executor!r} is unknown; use local or ray")
        if self.inconclusive not in INCONCLUSIVE:
            raise InputError(f"--inconclusive {self.inconclusive!r} is unknown; use fail (the default) or pass")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise InputError(f"--seed must be a whole number from 0 to {2**32 - 1}, not {self.seed}")
        if self.original is not None and self.method != "auto":  # one rule for every method, none included
            raise InputError("--original audits a model unlearned elsewhere, so no unlearning runs and --method "
                             f"does not apply; drop --method {self.method}")
        if self.method not in METHODS:
            raise InputError(f"--method {self.method!r} is unknown; use {', '.join(METHODS)}")
        if self.reference not in REFERENCES:
            raise InputError(f"--reference {self.reference!r} is unknown; use retrain or none")
        bad = [a for a in self.attacks if a not in ATTACK_FAMILIES]
        if bad or not self.attacks:
            raise InputError(f"--attacks {','.join(self.attacks)!r} is not valid; use mia, inversion or mia,inversion")
        bad = [a for a in self.mia_attacks if a not in MIA_ATTACKS]
        if bad:
            raise InputError(f"unknown membership attack {bad[0]!r}; use {', '.join(MIA_ATTACKS)}")
        if self.reference_models < 2 and NEEDS_REFERENCE & set(self.mia_attacks):
            raise InputError("--reference-models must be at least 2 for the LiRA, RMIA and shadow attacks")
        bad = [f for f in self.formats if f not in ("html", "pdf", "junit")]
        if bad:
            raise InputError(f"--format {bad[0]!r} is unknown; use html, pdf (or none)")
        if self.inversion_iterations < 1:
            raise InputError("inversion_iterations must be a positive whole number")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise InputError(f"--out {self.out} is a file; give a folder for the audit's outputs")
        blocked = next((p for p in self.out.parents if p.exists() and not p.is_dir()), None) if self.out else None
        if blocked is not None:
            raise InputError(f"--out {self.out} lies under {blocked}, which is a file; give a folder for the outputs")
        return parse_gates(self.fail_on)


@dataclass
class TargetResult:
    """One forget target's outcome: the verdict and its figures, typed; ``document`` is its part of
    results.json (serialised in one place, :func:`audit.results.build_document`)."""

    name: str
    verdict: str | None
    reason: str | None
    power_p_value: float | None
    p_value: float | None
    residual_leakage: float | None
    residual_leakage_ci95: tuple[float, float | None] | None
    overforgetting: float | None
    tests: list[Evidence]
    passed: bool
    error: str | None
    document: dict = field(repr=False)
    images: dict = field(default_factory=dict, repr=False)  # inversion PNGs to write, by relative path


@dataclass
class AuditResult:
    """The audit's outcome: exit code and verdict, the targets, and the results.json document."""

    exit_code: int
    verdict: str
    targets: list[TargetResult]
    document: dict
    out: Path | None
    files: list[Path]


def forget_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, float]:
    """(forget examples classified correctly, mean probability of their true class) from their logits."""
    correct = int((logits.argmax(1) == y).sum())
    confidence = float(torch.softmax(logits, 1).gather(1, y.view(-1, 1)).mean())
    return correct, confidence


def membership_test(ctx: AttackContext, logits: dict[str, torch.Tensor], ms,
                    seed: int) -> tuple[attacks.PairedTest, str, dict[str, np.ndarray]]:
    """The per-example paired test over every model on the same examples (attacks.unlearning_test).

    ``logits``: each model role's logits on ``ms``. With reference models: U-LiRA's
    per-example statistic. Without (they cannot be trained for a model without a recipe):
    the negative loss, a population test.
    """
    if ctx.has_reference:
        ref_phi = ctx.reference_confidence[:, ms.ids]
        in_mask = ctx.reference_models().in_mask[:, ms.ids]
        stats = {role: attacks.per_example_statistic(attacks.scaled_confidence(z, ms.y), ref_phi, in_mask)
                 for role, z in logits.items()}
        label = "per-example membership test (U-LiRA, Hayes et al. 2025)"
    else:
        stats = {role: -cross_entropy(z, ms.y) for role, z in logits.items()}
        label = "membership test on the loss (Yeom et al. 2018; no reference models)"
    null_roles = [role for role in stats if role == "reference" or role.startswith("retrain_")]
    # With retrained models, every model is tested against them (scoring: the "retrained" null).
    test = attacks.paired_permutation_test(stats, ms.is_member, baseline="original", null_roles=null_roles,
                                           centre_on_null=bool(null_roles), seed=seed)
    return test, label, stats


def per_example_picture(stats: dict[str, np.ndarray], is_forget: np.ndarray, retrain_roles: list[str]) -> dict:
    """The forget examples' statistic under the original, unlearned and retrained models (for the report's figure)."""
    out = {role: [round(float(v), 4) for v in stats[role][is_forget]] for role in ("original", "unlearned")}
    out["retrained"] = [round(float(v), 4) for r in retrain_roles for v in stats[r][is_forget]]
    out["held_out_original"] = [round(float(v), 4) for v in stats["original"][~is_forget]]
    return out


def audit_target(ctx: AttackContext, opts: AuditOptions, forget: ForgetSet, gates: list[Gate],
                 unlearned_given: ModelFile | None = None) -> TargetResult:
    mf, data = ctx.model_file, ctx.data
    doc: dict = {"name": forget.spec, "forget": forget.describe(), "method": None, "accuracy": {},
                 "timings": {}, "verdict": None, "verdict_reason": None, "advice": None, "alpha": opts.alpha,
                 "max_residual": opts.max_residual,
                 "power_p_value": None, "p_value": None, "residual_leakage": None, "residual_leakage_ci95": None,
                 "residual_leakage_upper": None, "overforgetting": None, "overforgetting_p_value": None,
                 "tests": [], "per_example": None, "membership": [], "inversion": None, "retrains": [],
                 "gates": [], "passed": False, "error": None}
    images: dict = {}
    tests: list[Evidence] = []
    try:
        fault("unlearn")
        start = time.perf_counter()
        if unlearned_given is not None:
            unlearned = unlearned_given.model
            doc["method"] = {"name": "given", "reason": f"unlearned elsewhere: {unlearned_given.path or 'a model given in memory'}, "
                             f"audited against the original {mf.path or 'given in memory'}; no unlearning step ran",
                             "seconds": None,
                             "details": {"lineage": unlearned_given.lineage}}
        elif opts.method == "none":
            unlearned = copy.deepcopy(mf.model)
            doc["method"] = {"name": "none", "reason": "the no-op control (--method none): the weights are left "
                             "unchanged, so this target must not pass", "seconds": 0.0, "details": {}}
        else:
            choice = choose_method(opts.method, mf, forget)
            outcome = unlearn(mf, data, forget, choice.name, None, opts.seed, opts.show_progress, choice.log)
            unlearned = outcome.model
            doc["method"] = {"name": choice.name, "reason": choice.reason, "seconds": outcome.seconds,
                             "details": outcome.details}
        doc["timings"]["unlearn"] = time.perf_counter() - start
        models = {"original": mf.model, "unlearned": unlearned}
        retrain_roles: list[str] = []
        if opts.reference == "retrain":
            start = time.perf_counter()
            with progress_bar(f"retraining {opts.retrains} reference models without {forget.spec}", 1,
                              opts.show_progress) as advance:
                retrained = ctx.retrained_models(forget, opts.retrains)
                advance(1)
            for k, (model, seed, hit) in enumerate(retrained):
                role = "reference" if k == 0 else f"retrain_{k}"
                models[role] = model
                retrain_roles.append(role)
                doc["retrains"].append({"seed": seed, "from_cache": hit, "digest": attacks.model_digest(model)})
            doc["timings"]["reference"] = time.perf_counter() - start
        doc["accuracy"] = {role: accuracies(models[role], data, forget) for role in ("original", "unlearned")}
        doc["accuracy"]["reference"] = accuracies(models["reference"], data, forget) if retrain_roles else None
        for k, role in enumerate(retrain_roles):
            doc["retrains"][k]["accuracy"] = accuracies(models[role], data, forget)

        start = time.perf_counter()
        ms = membership_set(ctx, forget)
        # Every model's logits on the audited examples, once: the verdict's tests and the attacks read them.
        logits = {role: attacks.model_logits(m, ms.x) for role, m in models.items()}
        # The verdict's membership test: per example, every model, the same examples.
        paired, label, stats = membership_test(ctx, logits, ms, opts.seed)
        tests.append(membership_evidence(paired, label, retrain_roles))
        doc["per_example"] = per_example_picture(stats, ms.is_member, retrain_roles)
        if forget.classes and retrain_roles:
            n_forget = len(forget)  # the forget set leads the membership set, in its own order
            counts = {role: forget_correct(z[:n_forget], ms.y[:n_forget]) for role, z in logits.items()}
            ref_counts = [counts[r][0] for r in retrain_roles]
            n = len(forget)
            ev = rate_evidence("class_accuracy", "accuracy on the forgotten class against retrained models",
                               attacks.rate_excess_test(counts["original"][0], n, ref_counts),
                               attacks.rate_excess_test(counts["unlearned"][0], n, ref_counts))
            ev.detail["confidence"] = {"original": counts["original"][1], "unlearned": counts["unlearned"][1],
                                       "retrained": [counts[r][1] for r in retrain_roles]}
            tests.append(ev)
        # Population attacks: ROC diagnostics on the original, unlearned and first retrained model.
        shown = {role: models[role] for role in ("original", "unlearned", "reference") if role in models}
        if "mia" in opts.attacks and ctx.mia_attacks:
            total = len(ctx.mia_attacks) * len(shown)
            with progress_bar(f"membership attacks on {forget.spec}", total, opts.show_progress) as advance:
                outcomes = run_membership(ctx, shown, ms, advance, logits)
            doc["membership"] = [o.to_dict() for o in outcomes]
        if "inversion" in opts.attacks and forget.classes:
            inv, images = run_inversion(ctx, models, list(forget.classes), forget.spec)
            doc["inversion"] = inv
            if retrain_roles:
                n = inv["n_reconstructions"]
                ref_counts = [r["recognised"] for r in inv["retrains"]]
                tests.append(rate_evidence(
                    "inversion", "model inversion (MI-Face) recognised against retrained models",
                    attacks.rate_excess_test(inv["original"]["recognised"], n, ref_counts),
                    attacks.rate_excess_test(inv["unlearned"]["recognised"], n, ref_counts)))
        doc["timings"]["attacks"] = time.perf_counter() - start
        verdict = decide(tests, opts.alpha, opts.max_residual)
        doc["tests"] = [t.to_dict() for t in tests]
        found = verdict.to_dict()
        found["verdict_reason"] = found.pop("reason")
        doc.update({k: v for k, v in found.items() if k in doc})
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed: any failure of a step is recorded, exit 3
        doc["error"] = (f"{type(exc).__name__}: {exc}" if not isinstance(exc, AuditError) else str(exc)) \
            or type(exc).__name__  # never "": an empty message is still a failed step
        doc["verdict"] = "error"
    gate_target(doc, gates, opts.inconclusive)  # fails every gate of a target whose step failed
    ci = doc["residual_leakage_ci95"]
    return TargetResult(forget.spec, doc["verdict"], doc["verdict_reason"], doc["power_p_value"], doc["p_value"],
                        doc["residual_leakage"], tuple(ci) if ci else None, doc["overforgetting"], tests,
                        doc["passed"], doc["error"], doc, images if doc["inversion"] else {})


def _check_pair(original: ModelFile, unlearned: ModelFile, data) -> None:
    """An unlearned model audited against ``--original`` must be the same network on the same data."""
    same = ((original.arch == unlearned.arch or unlearned.kind == "torchscript") and tuple(original.input_shape) == tuple(unlearned.input_shape)
            and original.num_classes == unlearned.num_classes)
    if not same:
        raise InputError(f"{unlearned.path} ({unlearned.arch}, {'x'.join(map(str, unlearned.input_shape))}, "
                         f"{unlearned.num_classes} classes) is not the same network as --original {original.path} "
                         f"({original.arch}, {'x'.join(map(str, original.input_shape))}, {original.num_classes} "
                         "classes); pass the model that was unlearned from it")
    names = set(original.model.state_dict())
    if unlearned.kind != "torchscript" and set(unlearned.model.state_dict()) != names:
        raise InputError(f"{unlearned.path} has other weights than --original {original.path}; "
                         "pass the model that was unlearned from it")
    recorded = (unlearned.data or {}).get("sha256")
    if recorded and recorded != data.sha256():
        raise InputError(f"{unlearned.path} was unlearned on other data than --original {original.path} "
                         f"was trained on ({data.spec}); pass the matching --data")


def run(model: str | Path, forget: list[str] | str, **options) -> AuditResult:
    """Audit ``model`` for each forget spec; see :class:`AuditOptions` for the options.

    With ``original=PATH``, ``model`` is a model unlearned elsewhere and PATH the model it
    was unlearned from: no unlearning step runs, the given model is audited.
    """
    opts = AuditOptions(model=Path(model), forget=[forget] if isinstance(forget, str) else list(forget), **options)
    opts.out = Path(opts.out)
    if opts.original is not None:
        opts.original = Path(opts.original)
    gates = opts.validate()
    user = user_code(opts)
    given = load_dataset(opts.data, opts.data_root) if opts.data else None
    # A bare state_dict takes its input shape and classes from --data.
    shape = dict(arch=opts.arch, input_shape=given.input_shape if given else None,
                 num_classes=given.num_classes if given else None, user=user)
    unlearned_given = None
    if opts.original is not None:
        mf = load_model(opts.original, **shape)
        unlearned_given = load_model(opts.model, **{**shape, "arch": opts.arch or mf.arch})
    else:
        mf = load_model(opts.model, **shape)
    data = load_data_for(opts.data, opts.data_root, mf, loaded=given)
    forget_sets = [parse_forget(spec, data.y_train, data.num_classes) for spec in opts.forget]
    return audit_loaded(opts, gates, mf, data, forget_sets, unlearned_given)


def _audit_one(ctx: AttackContext, opts: AuditOptions, gates: list[Gate], unlearned_given: ModelFile | None,
               forget: ForgetSet) -> TargetResult | InputError:
    """One forget target as a task; bad input comes back as a value (no retry can mend it)."""
    try:
        return audit_target(ctx, opts, forget, gates, unlearned_given)
    except InputError as exc:
        return exc


def audit_targets_as_tasks(ctx: AttackContext, opts: AuditOptions, forget_sets: list[ForgetSet], gates: list[Gate],
                           unlearned_given: ModelFile | None) -> list[TargetResult]:
    """Independent forget targets as tasks of the executor (Ray), sharing what every target needs.

    The reference models (and their logits) and the inversion evaluator are built first,
    once, with their training spread over the cluster; each target task then unlearns,
    retrains and tests in its worker. Targets come back in order.
    """
    if ctx.has_reference:
        ctx.reference_models()
        ctx.reference_confidence  # noqa: B018 - computed here, shipped with the context
    if "inversion" in opts.attacks and any(fs.classes for fs in forget_sets):
        ctx.evaluator()
    worker = copy.copy(ctx)  # the cached reference models and signals travel; the cluster handle does not
    worker.executor = None
    quiet = dataclasses.replace(opts, show_progress=False)
    results = ctx.executor.map(functools.partial(_audit_one, worker, quiet, gates, unlearned_given), forget_sets,
                               "forget requests")
    for result in results:
        if isinstance(result, InputError):
            raise result
    return results


def user_code(opts: AuditOptions):
    """The user's factory, training function, normalisation and recipe, when any is named."""
    from audit.usercode import UserCode, is_reference

    paths = [opts.code_path] if isinstance(opts.code_path, str) else list(opts.code_path or [])
    if not (is_reference(opts.arch) or opts.train or opts.normalize or opts.recipe or opts.arch_args or paths):
        return None
    code = UserCode.load(opts.arch, opts.arch_args, opts.train, opts.normalize, paths)
    if opts.recipe:
        from unlearning import TrainConfig

        try:
            config = TrainConfig.from_dict(opts.recipe)
            config.validate()
        except (TypeError, ValueError) as exc:
            raise InputError(f"the training recipe is not valid: {exc}") from None
        code.recipe = config.to_dict()
    return code


def audit_loaded(opts: AuditOptions, gates: list[Gate], mf: ModelFile, data, forget_sets: list[ForgetSet],
                 unlearned_given: ModelFile | None = None) -> AuditResult:
    """The core every entry point shares (files: :func:`run`; memory: :func:`audit.evaluate`).

    Checks that the pieces fit, audits every target, builds the results document and,
    when ``opts.out`` is set, writes the outputs.
    """
    from audit.results import build_document, write_outputs

    source = opts.original or opts.model
    if tuple(mf.input_shape) != tuple(data.input_shape) or mf.num_classes != data.num_classes:
        raise InputError(f"the data {data.spec!r} ({'x'.join(map(str, data.input_shape))} images, {data.num_classes} "
                         f"classes) does not fit {source} ({'x'.join(map(str, mf.input_shape))}, "
                         f"{mf.num_classes} classes); pass the --data the model was trained on")
    if unlearned_given is not None:
        _check_pair(mf, unlearned_given, data)
    from audit.preflight import check_before_work

    check_before_work(mf, data, unlearned_given)  # one probe forward pass per model, before any training
    if not mf.trainable and (opts.reference == "retrain" or NEEDS_REFERENCE & set(opts.mia_attacks)):
        raise InputError(f"{source} carries no training recipe, so reference models cannot be trained; pass "
                         "--arch package.module:factory with --train package.module:fit (or a recipe: --epochs, "
                         "--lr, ...), or --reference none --mia loss for a weaker audit")
    if not mf.unlearnable and unlearned_given is None and opts.method != "none":
        raise InputError(f"{source} is a TorchScript archive, which cannot be unlearned here; unlearn it elsewhere "
                         "and audit the result with --original, or pass its state_dict with --arch")
    for fs in forget_sets:
        if len(fs) >= len(data.y_train):
            raise InputError(f"--forget {fs.spec} selects every training example; nothing would be left to keep")
    opts.assumptions = say_assumptions(mf, unlearned_given)  # every input checked: now say what was assumed
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else attacks.default_cache_dir()
    from audit.executor import make_executor, torch_threads

    paths = [opts.code_path] if isinstance(opts.code_path, str) else list(opts.code_path or [])
    executor = make_executor(opts.executor, opts.ray_address, opts.cpus_per_model, opts.gpus_per_model,
                             opts.show_progress, paths)
    if executor.name == "ray":
        executor.start()  # an unreachable cluster is bad input (exit 2), found before any work
    ctx = AttackContext(mf, data, opts.seed, opts.reference_models, cache_dir,
                        opts.mia_attacks if "mia" in opts.attacks else [], opts.inversion_iterations,
                        use_reference=mf.trainable and opts.reference_models >= 2, executor=executor)
    started = time.time()
    try:
        # Unlearning, the evaluator, the attacks' own models and every figure run on the thread count of
        # the training tasks, not the machine's core count (issue 16, item 8).
        with torch_threads(executor.threads):
            if executor.name == "ray" and len(forget_sets) > 1:
                targets = audit_targets_as_tasks(ctx, opts, forget_sets, gates, unlearned_given)
            else:
                targets = [audit_target(ctx, opts, fs, gates, unlearned_given) for fs in forget_sets]
    finally:
        executor.close()
    doc = build_document(opts, mf, data, targets, started, ctx)
    files = (write_outputs(doc, opts, {k: v for t in targets for k, v in t.images.items()})
             if opts.out is not None else [])
    return AuditResult(doc["exit_code"], doc["verdict"], targets, doc, opts.out, files)
