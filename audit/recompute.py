"""A verdict recomputed from what its tests were computed from, never read from the document.

``audit run`` records, with each membership test, the per-example statistic of every model
role (rounded to float32 *before* the test runs, so the recorded test is exactly the
recomputation from the recorded values), which examples are the forget set (the first
``n_forget``), the null roles, the centring flag, the seed and the permutation and
bootstrap counts (:class:`reports.document.RecordedStatistics`). The class-accuracy and
inversion tests record their counts. ``audit gate`` and ``audit report`` call
:func:`recompute_tests` on every target: it reruns :func:`attacks.paired_permutation_test`
and :func:`attacks.rate_excess_test` from those inputs, compares every p-value, effect,
interval and count the document records, and cross-checks the target's other figures
(the forget set's size, the forget accuracies, the inversion counts, the per-example
picture, the no-op control). Any disagreement is an :class:`InputError` (exit 2, one line).

A null role is any name: a "pool" role of shared reference models is recomputed like a
retrained one, with no special case.

Sizes are bounded before anything is decoded (:data:`MAX_EXAMPLES`, :data:`MAX_ROLES`,
:data:`MAX_DRAWS`), so a forged document cannot make the gate allocate without limit.
"""

from __future__ import annotations

import base64
import binascii
import math

import numpy as np

from audit.errors import InputError
from reports.document import Config, Evidence, RecordedStatistics, Target

#: The tests a verdict may rest on; a document naming another is refused.
TEST_NAMES = ("membership", "class_accuracy", "inversion")
#: Bounds on what a recorded test may ask the gate to recompute (a run's own tests are far smaller:
#: a forget set of 600 with 10,000 held-out examples and 4,000 permutations).
MAX_EXAMPLES = 200_000
MAX_ROLES = 300
MAX_DRAWS = 100_000  # permutations, and bootstrap draws
MAX_CELLS = 60_000_000  # permutations x examples: the permutation matrix's size (float64: 480 MB)
_CLASS_ACCURACY_EXTRA = {"confidence"}  # recorded beside the counts, not part of the test


def _bad(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what}; the document is corrupt or edited: regenerate it with `audit run`")


# --- Recording (audit run) ---------------------------------------------------------------------
def round_statistic(values: np.ndarray) -> np.ndarray:
    """``values`` as the document records them: float32, held as float64 for the test."""
    return np.asarray(values, dtype=np.float64).astype("<f4").astype(np.float64)


def recorded_membership_evidence(stats: dict[str, np.ndarray], is_forget: np.ndarray, label: str,
                                 retrained_roles: list[str], null_roles: list[str], null: str, seed: int,
                                 permutations: int, bootstrap: int) -> tuple[Evidence, dict[str, np.ndarray]]:
    """The membership test's evidence computed from the float32-rounded ``stats``, with those
    inputs recorded (:class:`RecordedStatistics`); and the rounded statistics, forget examples
    first, for the per-example picture. The run's verdict rests on this evidence."""
    forget = np.asarray(is_forget, dtype=bool)
    order = np.r_[np.flatnonzero(forget), np.flatnonzero(~forget)]  # forget first, each in its own order
    rounded = {role: round_statistic(np.asarray(s)[order]) for role, s in stats.items()}
    inputs = RecordedStatistics(
        n_forget=int(forget.sum()), n_held_out=int((~forget).sum()),
        statistic={role: base64.b64encode(s.astype("<f4").tobytes()).decode("ascii") for role, s in rounded.items()},
        baseline="original", null_roles=list(null_roles), retrained_roles=list(retrained_roles),
        centre_on_null=null != "permutation", null=null, seed=int(seed), permutations=int(permutations),
        bootstrap=int(bootstrap))
    evidence = membership_from_inputs(inputs, label)
    return evidence, rounded


# --- Recomputing (audit gate, audit report) ----------------------------------------------------
def decode_statistics(inputs: RecordedStatistics, where: str) -> dict[str, np.ndarray]:
    """The recorded per-role statistics, bounded and checked before anything is decoded."""
    n = inputs.n_forget + inputs.n_held_out
    if n > MAX_EXAMPLES:
        raise _bad(where, f"its membership test claims {n} examples, more than the {MAX_EXAMPLES} any run records")
    if not 1 <= len(inputs.statistic) <= MAX_ROLES:
        raise _bad(where, f"its membership test records {len(inputs.statistic)} model roles, not 1 to {MAX_ROLES}")
    if inputs.permutations > MAX_DRAWS or inputs.bootstrap > MAX_DRAWS or inputs.permutations * n > MAX_CELLS:
        raise _bad(where, f"its membership test claims {inputs.permutations} permutations and {inputs.bootstrap} "
                          f"bootstrap draws over {n} examples, beyond what any run uses")
    width = 4 * ((4 * n + 2) // 3)  # base64 length of n float32 values
    out = {}
    for role, text in inputs.statistic.items():
        if not isinstance(text, str) or len(text) != width:
            raise _bad(where, f"the statistic of {role!r} is not {n} float32 values")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(where, f"the statistic of {role!r} is not base64") from None
        values = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        if values.shape != (n,) or not np.all(np.isfinite(values)):
            raise _bad(where, f"the statistic of {role!r} is not {n} finite float32 values")
        out[role] = values
    needed = {"original", "unlearned", *inputs.null_roles, *inputs.retrained_roles}
    if inputs.baseline is not None:
        needed.add(inputs.baseline)
    missing = sorted(needed - set(out))
    if missing:
        raise _bad(where, f"its membership test names the role(s) {', '.join(map(repr, missing))} but records no "
                          "statistic for them")
    return out


def membership_from_inputs(inputs: RecordedStatistics, label: str | None, where: str = "results") -> Evidence:
    """The membership test's evidence, recomputed from its recorded inputs (the run uses the same function)."""
    import attacks
    from audit.scoring import membership_evidence

    stats = decode_statistics(inputs, where)
    is_forget = np.r_[np.ones(inputs.n_forget, dtype=bool), np.zeros(inputs.n_held_out, dtype=bool)]
    try:
        test = attacks.paired_permutation_test(stats, is_forget, baseline=inputs.baseline,
                                               null_roles=list(inputs.null_roles),
                                               centre_on_null=inputs.centre_on_null,
                                               n_permutations=inputs.permutations, n_bootstrap=inputs.bootstrap,
                                               seed=inputs.seed)
        if inputs.null is not None:
            test.null = inputs.null  # which models the null roles are (pool or retrained): the same arithmetic
        evidence = membership_evidence(test, label or "", list(inputs.retrained_roles))
    except (ValueError, KeyError) as exc:
        raise _bad(where, f"its membership test cannot be recomputed ({' '.join(str(exc).split())[:120]})") from None
    evidence.inputs = inputs
    return evidence


def rate_from_counts(recorded: Evidence, where: str) -> Evidence:
    """A class-accuracy or inversion test recomputed from its recorded counts."""
    import attacks
    from audit.scoring import rate_evidence

    d = recorded.detail
    try:
        n, k_o, k_u = d["n"], d["count_original"], d["count_unlearned"]
        refs = list(d["count_retrained"])
    except (KeyError, TypeError):
        raise _bad(where, f"its {recorded.name} test records no counts (n, count_original, count_unlearned, "
                          "count_retrained)") from None
    counts = [n, k_o, k_u, *refs]
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts) or not 1 <= n <= MAX_EXAMPLES \
            or not all(0 <= c <= n for c in counts[1:]) or len(refs) > MAX_ROLES:
        raise _bad(where, f"the counts of its {recorded.name} test are not whole numbers between 0 and n")
    evidence = rate_evidence(recorded.name, recorded.label or "", attacks.rate_excess_test(k_o, n, refs),
                             attacks.rate_excess_test(k_u, n, refs))
    if recorded.name == "class_accuracy" and "confidence" in d:
        evidence.detail["confidence"] = d["confidence"]
    return evidence


def recompute_tests(target: Target, config: Config, where: str) -> list[Evidence]:
    """``target``'s tests rebuilt from what they were computed from, each compared with what the
    document records (every figure, Holm's included once decided). Raises :class:`InputError`."""
    names = [t.name for t in target.tests]
    unknown = [n for n in names if n not in TEST_NAMES]
    if unknown:
        raise _bad(where, f"it records a test named {unknown[0]!r}, which no audit runs (known: "
                          f"{', '.join(TEST_NAMES)})")
    if len(set(names)) != len(names):
        raise _bad(where, "it records the same test twice")
    if "membership" not in names:
        raise _bad(where, "it records no membership test, on which every verdict rests")
    tests = []
    for recorded in target.tests:
        if recorded.name == "membership":
            if recorded.inputs is None:
                raise _bad(where, "its membership test records no per-example statistics, so its figures cannot be "
                                  "recomputed (documents written before they were recorded cannot be gated)")
            tests.append(membership_from_inputs(recorded.inputs, recorded.label, where))
        else:
            tests.append(rate_from_counts(recorded, where))
    _expected_tests(target, config, tests, where)
    _cross_check(target, tests, where)
    return tests


def compare_tests(recorded: list[Evidence], recomputed: list[Evidence], where: str) -> None:
    """Every field of every recorded test equals its recomputation (``decide`` has set the Holm p-values)."""
    from reports.document import plain

    for mine, theirs in zip(recomputed, recorded):
        a = plain(mine.model_dump(by_alias=True, exclude={"inputs"}))
        b = plain(theirs.model_dump(by_alias=True, exclude={"inputs"}))
        path = _first_difference(b, a, theirs.name)
        if path is not None:
            raise _bad(where, f"its {theirs.name} test records {path}, which its recorded inputs do not give")


def _first_difference(recorded, computed, path: str) -> str | None:
    if isinstance(recorded, dict) and isinstance(computed, dict):
        if set(recorded) != set(computed):
            extra = sorted(set(recorded) ^ set(computed))
            return f"{path} with the field(s) {', '.join(map(str, extra))[:80]} (added or removed)"
        for key in computed:
            found = _first_difference(recorded[key], computed[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list) and isinstance(computed, list):
        if len(recorded) != len(computed):
            return f"{path} of length {len(recorded)}"
        for i, (r, c) in enumerate(zip(recorded, computed)):
            found = _first_difference(r, c, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(computed, float) or isinstance(recorded, float):
        if isinstance(recorded, bool) or not isinstance(recorded, (int, float)) or \
                not isinstance(computed, (int, float)) or \
                not math.isclose(float(recorded), float(computed), rel_tol=1e-9, abs_tol=1e-12):
            return f"{path} = {str(recorded)[:40]}"
        return None
    return None if recorded == computed else f"{path} = {str(recorded)[:40]}"


def _expected_tests(target: Target, config: Config, tests: list[Evidence], where: str) -> None:
    """The tests a run of this target always runs are all there: none was dropped to flip the verdict."""
    membership = next(t for t in tests if t.name == "membership")
    inputs = membership.inputs
    classes = bool(target.forget is not None and target.forget.classes)
    if inputs is not None and inputs.null == "pool":
        # Against the shared pool: its one null role is the pool's mean, and nothing was retrained.
        if list(inputs.retrained_roles) != ["pool"] or target.retrains or classes:
            raise _bad(where, "its membership test is against the shared pool, which a run uses only for a sample "
                              "request, with the one null role 'pool' and no retrained model")
        retrained: list[str] = []
    else:
        retrained = list(inputs.retrained_roles) if inputs is not None else []
    if len(retrained) != len(target.retrains):
        raise _bad(where, f"its membership test compares {len(retrained)} retrained models but the target "
                          f"records {len(target.retrains)}")
    if retrained and config.retrains is not None and len(retrained) != config.retrains:
        raise _bad(where, f"it compares {len(retrained)} retrained models but the run's config asks for "
                          f"{config.retrains}")
    expected = {"membership"}
    if classes and retrained:
        expected.add("class_accuracy")
    if target.inversion is not None and retrained:
        expected.add("inversion")
    found = {t.name for t in tests}
    if found != expected:
        raise _bad(where, f"it records the tests {', '.join(sorted(found))}, but a run of this target records "
                          f"{', '.join(sorted(expected))}")


def _cross_check(target: Target, tests: list[Evidence], where: str) -> None:
    """The target's other figures agree with its tests' inputs."""
    from audit.evidence import per_example_picture

    by_name = {t.name: t for t in tests}
    inputs = by_name["membership"].inputs
    assert inputs is not None
    n = target.forget.n if target.forget is not None else None
    # Against the shared pool, a forget example that every pool model trained on has no model to be compared
    # with and is left out of the test (audit.evidence.membership_test: with fewer reference models than the
    # pool has parts); every other test has the whole forget set.
    if n is not None and (n < inputs.n_forget if inputs.null == "pool" else n != inputs.n_forget):
        raise _bad(where, f"it forgets {n} examples but its membership test has {inputs.n_forget}")
    stats = decode_statistics(inputs, where)
    method = target.method.name if target.method is not None else None
    if method == "none" and not np.array_equal(stats["original"], stats["unlearned"]):
        raise _bad(where, "it claims the no-op control (--method none), yet its unlearned model's statistics differ "
                          "from the original's")
    if target.per_example is not None:
        is_forget = np.r_[np.ones(inputs.n_forget, dtype=bool), np.zeros(inputs.n_held_out, dtype=bool)]
        # The examples' training ids ride along (documents before them have none); the figures must match.
        figures = {k: v for k, v in target.per_example.items() if k != "forget_ids"}
        if figures != per_example_picture(stats, is_forget, list(inputs.retrained_roles)):
            raise _bad(where, "its per-example figures are not those of its membership test's statistics")
        ids = target.per_example.get("forget_ids")
        if ids is not None and (len(ids) != inputs.n_forget or len(set(ids)) != len(ids)
                                or any(not float(i).is_integer() or i < 0 for i in ids)):
            raise _bad(where, "its per-example forget_ids are not one distinct training id per forget example")
    rate = by_name.get("class_accuracy")
    if rate is not None:
        n = rate.detail["n"]
        if n != inputs.n_forget:
            raise _bad(where, f"its class-accuracy test counts {n} examples, its membership test {inputs.n_forget}")
        acc = target.accuracy
        for model, count in (("original", rate.detail["count_original"]), ("unlearned", rate.detail["count_unlearned"]),
                             ("reference", (rate.detail["count_retrained"] or [None])[0])):
            figures = getattr(acc, model)
            if count is None or figures is None or figures.forget is None:
                continue
            # The accuracies are computed in their own batches: allow one example's flip, not more.
            if abs(figures.forget - count / n) > 1.5 / n:
                raise _bad(where, f"its {model} forget accuracy {figures.forget:.4g} is not its class-accuracy "
                                  f"test's {count} of {n}")
    inv = by_name.get("inversion")
    if inv is not None and target.inversion is not None:
        recorded = (target.inversion.original.recognised if target.inversion.original else None,
                    target.inversion.unlearned.recognised if target.inversion.unlearned else None,
                    [r.recognised for r in target.inversion.retrains], target.inversion.n_reconstructions)
        if recorded != (inv.detail["count_original"], inv.detail["count_unlearned"], inv.detail["count_retrained"],
                        inv.detail["n"]):
            raise _bad(where, "its inversion test's counts are not those of its inversion figures")


def refuse_pass_of_no_op(target: Target, verdict: str, where: str) -> None:
    """The no-op control leaves the weights as they were: it cannot pass, whatever a document says."""
    method = target.method.name if target.method is not None else None
    if method == "none" and verdict == "pass":
        raise _bad(where, "it passes the no-op control (--method none), which forgets nothing and cannot pass")
