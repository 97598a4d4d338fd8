"""The results document (``results.json``) as typed models: the one definition that the
harness (``audit run``, ``audit.evaluate``) builds, ``audit gate`` reads and ``reports/``
renders. Knows nothing of torch.

Version 2 (version 1 had no per-target verdict and is refused with one line); fractions
in [0, 1], times in seconds; a number that could not be measured is ``null``. Unknown
extra fields are kept (later minor additions). ``audit schema`` prints the JSON Schema
(:func:`json_schema`); the same schema is published as ``docs/results.schema.json``.

Reading a document (bounded, strict, one line per problem) is :mod:`reports.reading`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

SCHEMA = "amnesia-audit/results"
SCHEMA_VERSION = 2


def _nan_to_none(value: Any) -> Any:
    """NaN (not measured) is null, as results.json writes it; infinities stay until written."""
    return None if isinstance(value, float) and math.isnan(value) else value


# Documented ranges (docs/verdict.md): a value outside them is a corrupt or edited document.
Share = Annotated[Annotated[float, Field(ge=0.0, le=1.0)] | None, BeforeValidator(_nan_to_none)]
NonNegative = Annotated[Annotated[float, Field(ge=0.0)] | None, BeforeValidator(_nan_to_none)]
#: [low, high]; a null end could not be measured (for the residual: unbounded above).
Pair = Annotated[list[float | None], Field(min_length=2, max_length=2)]

class Part(BaseModel):
    """A part of the document: fields in the order results.json writes them; extra fields kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=True)


# --- One attack's figures ------------------------------------------------------------------
class Roc(Part):
    fpr: list[float]
    tpr: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> "Roc":
        if len(self.fpr) != len(self.tpr):
            raise ValueError("should be two lists of numbers of equal length (fpr, tpr)")
        return self


class AttackMetrics(Part):
    """One membership attack on one model: the forget set as members against held-out non-members."""

    auc: Share = None
    tpr_at_1pct_fpr: Share = None
    tpr_at_01pct_fpr: Share = Field(None, alias="tpr_at_0.1pct_fpr")
    balanced_accuracy: Share = None
    advantage: Annotated[Annotated[float, Field(ge=-1.0, le=1.0)] | None, BeforeValidator(_nan_to_none)] = None
    precision: Share = None
    recall: Share = None
    threshold: float | None = None
    epsilon: float | None = None
    #: threshold chosen on one half of the examples, bounded on the other
    epsilon_lower_bound: float | None = None
    epsilon_ci95: Pair | None = None
    delta: float | None = None
    n_members: int | None = None
    n_non_members: int | None = None
    roc: Roc | None = None  # at most 200 points, log-spaced in FPR


class MembershipResult(Part):
    """One population attack on the original, unlearned and first retrained model (diagnostics)."""

    attack: str
    label: str | None = None
    assumes: str | None = None
    original: AttackMetrics | None = None
    unlearned: AttackMetrics | None = None
    reference: AttackMetrics | None = None
    #: the attack trains reference models (LiRA, RMIA, shadow); absent in documents written before it
    needs_reference: bool | None = None


def _no_nul(path: str) -> str:
    if "\x00" in path:
        raise ValueError("holds a NUL byte, which no file path can")
    return path


#: An image's path relative to the folder of results.json (a PNG the harness wrote there).
ImagePath = Annotated[str, AfterValidator(_no_nul)]


class InversionFigures(Part):
    attack_accuracy: Share = None
    recognised: int | None = None
    similarity: float | None = None
    similarity_other: float | None = None
    nearest_is_target: float | None = None
    confidence: float | None = None
    seconds: float | None = None
    images: list[ImagePath] = Field(default_factory=list)


class RealExample(Part):
    """A real example of a forgotten class, shown beside the reconstructions. It comes from the held-out
    test split, never from the training data: for a class request every training example of the class is
    one the request asked to forget, and a report must not carry those."""

    label: int  # the class
    split: Literal["test"] = "test"
    index: Annotated[int, Field(ge=0)]  # in the data set's test split
    image: ImagePath


class RetrainInversion(Part):
    attack_accuracy: Share = None
    recognised: int | None = None


class Inversion(Part):
    """MI-Face on each forgotten class, for every model."""

    classes: list[int] = Field(default_factory=list)
    restarts: int | None = None
    iterations: int | None = None
    n_reconstructions: int | None = None
    evaluator: str | None = None
    retrains: list[RetrainInversion] = Field(default_factory=list)
    original: InversionFigures | None = None
    unlearned: InversionFigures | None = None
    reference: InversionFigures | None = None
    #: the first few examples of each class in the held-out test split (absent in documents written before it)
    real_examples: list[RealExample] = Field(default_factory=list)


# --- The verdict's evidence ----------------------------------------------------------------
class RecordedStatistics(Part):
    """What a membership test was computed from, so that ``audit gate`` and ``audit report``
    recompute it instead of trusting its figures (``audit.recompute``).

    ``statistic``: per model role, the per-example statistic of the ``n_forget`` forget
    examples then the ``n_held_out`` held-out ones, as little-endian float32 in base64
    (the run rounds the statistic to float32 *before* testing, so the recorded test is
    exactly the recomputation from these values). The rest are the arguments of
    ``attacks.paired_permutation_test``; ``retrained_roles`` are the roles whose effects
    the evidence lists as ``effect_retrained``.
    """

    encoding: Literal["float32-le-base64"] = "float32-le-base64"
    n_forget: Annotated[int, Field(ge=1)]
    n_held_out: Annotated[int, Field(ge=1)]
    statistic: dict[str, str]
    baseline: str | None = "original"
    null_roles: list[str] = Field(default_factory=list)
    retrained_roles: list[str] = Field(default_factory=list)
    centre_on_null: bool = False
    # What the null roles are: the shared pool's models that left each example out, or retrained models.
    null: Literal["pool", "retrained", "permutation"] | None = None
    seed: Annotated[int, Field(ge=0)]
    permutations: Annotated[int, Field(ge=1)]
    bootstrap: Annotated[int, Field(ge=1)]


class Evidence(Part):
    """One test of a target on the original and the unlearned model (``audit.scoring``).

    ``p_original`` / ``p_unlearned`` are the raw one-sided p-values; the ``*_holm`` ones
    are adjusted over the target's tests. ``residual`` is the unlearned model's share of the
    original's effect, clipped at 0, with its 95% interval and its one-sided 95% upper bound
    (``residual_upper``, what a pass is judged by). ``detail`` says how the test was run
    (membership: ``detail.null`` is "pool", "retrained" or "permutation").
    """

    name: str
    label: str | None = None
    p_original: Annotated[float, Field(ge=0.0, le=1.0)]
    p_unlearned: Annotated[float, Field(ge=0.0, le=1.0)]
    effect_original: float | None = None
    effect_unlearned: float | None = None
    effect_retrained: list[float] = Field(default_factory=list)
    residual: float | None = None
    residual_ci95: Pair | None = None
    residual_upper: NonNegative = None  # one-sided 95% upper bound (null: unbounded, or not measured)
    p_original_holm: Share = None
    p_unlearned_holm: Share = None
    detail: dict[str, Any] = Field(default_factory=dict)
    #: membership tests: the per-example statistics and settings the test was computed from
    inputs: RecordedStatistics | None = None


class GateResult(Part):
    expr: str
    value: float | None = None
    passed: bool
    message: str | None = None


# --- One forget target -----------------------------------------------------------------------
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Forget(Part):
    spec: str | None = None
    n: int | None = None
    classes: list[int] | None = None  # null for sample sets
    #: SHA-256 of the sorted, unique ids in decimal, one per line (absent in documents written before it)
    ids_sha256: Sha256 | None = None
    file_sha256: Sha256 | None = None  # of the ids file's bytes (samples=PATH); null for other specs


class Method(Part):
    name: str | None = None  # amnesiac, relabel, finetune, retrain, none (the no-op control) or given
    reason: str | None = None
    seconds: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Accuracy(Part):
    forget: Share = None
    retain: Share = None
    test: Share = None
    test_other_classes: Share = None


class ModelAccuracies(Part):
    original: Accuracy | None = None
    unlearned: Accuracy | None = None
    reference: Accuracy | None = None  # the first retrained model


class Retrain(Part):
    seed: int | None = None
    from_cache: bool | None = None
    digest: str | None = None
    accuracy: Accuracy | None = None


class Target(Part):
    """One forget target: what was unlearned, the verdict and its evidence, the attacks, the gates."""

    name: str
    forget: Forget | None = None
    method: Method | None = None
    accuracy: ModelAccuracies = Field(default_factory=ModelAccuracies)
    timings: dict[str, float | None] = Field(default_factory=dict)  # unlearn, reference, attacks (null: not finite)
    verdict: Literal["pass", "fail", "not_memorised", "inconclusive", "error"] | None
    verdict_reason: str | None = None
    advice: str | None = None  # what would give the attacks power (inconclusive targets)
    alpha: Share = None
    max_residual: Share = None  # a pass needs residual_leakage_upper below it (absent before it existed)
    power_p_value: Share = None  # smallest Holm-adjusted p-value on the original model
    p_value: Share = None  # the same on the unlearned model
    residual_leakage: NonNegative = None  # 1: as much as the original; may exceed 1
    residual_leakage_ci95: Pair | None = None  # null high end: unbounded
    residual_leakage_upper: NonNegative = None
    overforgetting: float | None = None  # signed; positive: the deletion itself is visible
    overforgetting_p_value: Share = None
    # The original's per-example membership AUC (0.5: no signal) and its 95% interval: "not_memorised"
    # needs the upper end at most max_memorised_auc (absent in documents written before it existed).
    memorised_auc: Share = None
    memorised_auc_ci95: Pair | None = None
    memorised_auc_upper: Share = None  # one-sided 95% upper bound
    max_memorised_auc: Share = None
    tests: list[Evidence] = Field(default_factory=list)
    per_example: dict[str, list[float]] | None = None  # original, unlearned, retrained, held_out_original
    membership: list[MembershipResult] = Field(default_factory=list)
    inversion: Inversion | None = None
    retrains: list[Retrain] = Field(default_factory=list)
    gates: list[GateResult]
    passed: bool
    error: str | None = None  # one line: what failed


# --- The run ---------------------------------------------------------------------------------
class Tool(Part):
    name: str | None = None
    version: str | None = None
    libraries: dict[str, str | None] | None = None


class Normalization(Part):
    mean: list[float] = Field(default_factory=list)
    std: list[float] = Field(default_factory=list)


class ModelProvenance(Part):
    path: str | None = None
    sha256: str | None = None
    arch: str | None = None
    kind: str | None = None
    parameters: int | None = None
    normalization: Normalization | None = None
    recipe: dict[str, Any] | None = None
    factory: str | None = None  # module:name@digest of the source
    train_fn: str | None = None
    update_log: dict[str, Any] | None = None


class DataProvenance(Part):
    spec: str | None = None
    sha256: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None


class FileProvenance(Part):
    path: str | None = None
    sha256: str | None = None


class Machine(Part):
    platform: str | None = None
    cpus: int | None = None


class Provenance(Part):
    command: str | None = None
    model: ModelProvenance | None = None
    data: DataProvenance | None = None
    seed: int | None = None
    original: FileProvenance | None = None  # --original: the model unlearned from
    reference_models: dict[str, Any] | None = None  # num_models, seeds, from_cache, digests, train_fraction, ...
    machine: Machine | None = None
    executor: dict[str, Any] | None = None  # executor (local | ray), threads_per_model, workers or address, ...


class Config(Part):
    method: str | None = None
    reference: str | None = None
    attacks: list[str] = Field(default_factory=list)
    mia_attacks: list[str] = Field(default_factory=list)
    reference_models: int | None = None
    retrains: int | None = None
    alpha: Share = None
    max_residual: Share = None  # absent in documents written before a pass needed the removal shown
    inconclusive: str | None = None  # fail | pass
    max_memorised_auc: Share = None  # absent in documents written before "not_memorised" existed
    not_memorised: str | None = None  # pass | fail: how gates treat a not-memorised request
    inversion_iterations: int | None = None
    gates: list[str] = Field(default_factory=list)


class Signature(Part):
    algorithm: Literal["hmac-sha256"] = "hmac-sha256"
    key_env: str | None = None  # the environment variable the key was read from (never the key)
    # Which canonical form the value covers (audit.signing): 2 writes integral numbers as integers; 1
    # (absent: documents signed before the field existed) keeps the numbers as the file writes them.
    canonical: Literal[1, 2] = 1
    value: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Document(Part):
    """``results.json``: the run's verdict, where it came from, how it was configured, each target."""

    schema_: Literal["amnesia-audit/results"] = Field(SCHEMA, alias="schema")
    schema_version: Literal[2] = SCHEMA_VERSION
    created: str  # UTC, ISO 8601
    verdict: Literal["pass", "fail", "error"]  # of the run: fail if any target or gate failed
    exit_code: int | None = None  # 0, 1 or 3
    tool: Tool
    provenance: Provenance
    config: Config
    targets: list[Target]
    notes: list[str] = Field(default_factory=list)  # lines the reader must see
    #: HMAC-SHA256 over the canonical document without this field (``audit run --sign-key-env VAR``)
    signature: Signature | None = None

    def to_json(self, indent: int = 1) -> str:
        """The document as results.json writes it (``null`` for numbers that are not finite)."""
        import json

        return json.dumps(plain(self.model_dump(by_alias=True)), indent=indent, allow_nan=False) + "\n"


def plain(obj: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become null, tuples lists, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_schema() -> dict:
    """The JSON Schema of results.json (draft 2020-12), as ``audit schema`` prints it."""
    schema = Document.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    # What the loader (reports.reading) refuses, said to validators too (tests/robustness/test_document_reading.py):
    # the two fields that make a document one of ours, although the model fills them in...
    schema["required"] = ["schema", "schema_version", *[k for k in schema.get("required", [])
                                                         if k not in ("schema", "schema_version")]]
    # ...integers within 64 bits (JSON's 138.0 is the integer 138 to both; 1e300 is not a 64-bit one)...
    _bound_integers(schema)
    # ...and image paths without NUL. Beyond JSON Schema, and refused by the loader alone: ROC lists of
    # unequal length, nesting deeper than MAX_DEPTH, NaN or a number beyond 64-bit floats (not JSON).
    schema["$defs"]["InversionFigures"]["properties"]["images"]["items"]["pattern"] = NO_NUL
    schema["$defs"]["RealExample"]["properties"]["image"]["pattern"] = NO_NUL
    return schema


NO_NUL = "^[^\\u0000]*$"

#: The integers results.json holds, as reports.reading reads them (symmetric: abs(value) <= 2**63 - 1).
INT64_MAX = 2**63 - 1


def _bound_integers(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node["minimum"] = max(node.get("minimum", -INT64_MAX), -INT64_MAX)
            node["maximum"] = min(node.get("maximum", INT64_MAX), INT64_MAX)
        for child in node.values():
            _bound_integers(child)
    elif isinstance(node, list):
        for child in node:
            _bound_integers(child)
