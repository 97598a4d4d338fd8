"""Per-target sections: forget quality, membership inference, model inversion."""

from __future__ import annotations

from pathlib import Path

from reports.fmt import DASH, anchor, esc, interval, num, pct, pval, seconds, size, status
from reports.images import embed
from reports.summary import describe_leakage

ROLE_NAMES = {"original": "original model", "unlearned": "unlearned model", "reference": "retrained reference"}
SHORT_NAMES = {"original": "original", "unlearned": "unlearned", "reference": "retrained"}  # narrow table cells
ROLES = tuple(ROLE_NAMES)


def table(caption: str, head: list[str], rows: list[str], numeric_from: int = 1, cls: str = "") -> str:
    """A captioned table in a scrolling wrapper (phones); ``rows`` are ready ``<tr>`` strings."""
    numeric = ' class="n"'
    ths = "".join(f"<th{numeric if i >= numeric_from else ''}>{h}</th>" for i, h in enumerate(head))
    return (f"<div class=\"table-wrap\"><table class=\"{cls}\"><caption>{caption}</caption>"
            f"<thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def forget_quality(target: dict) -> str:
    accuracy = target.get("accuracy") or {}
    rows = []
    for role in ROLES:
        acc = accuracy.get(role)
        if acc is None:
            continue
        cells = "".join(f"<td class=\"n\">{pct(acc.get(k))}</td>" for k in ("forget", "retain", "test", "test_other_classes"))
        rows.append(f"<tr><td>{SHORT_NAMES[role]}</td>{cells}</tr>")
    parts = ["<h3>Forget quality</h3>"]
    if rows:
        before, after = accuracy.get("original") or {}, accuracy.get("unlearned") or {}
        ref = accuracy.get("reference") or {}
        sentence = (f"<p>Accuracy on the data to forget went from {pct(before.get('forget'))} to "
                    f"{pct(after.get('forget'))}" + (f" (the retrained reference: {pct(ref.get('forget'))})" if ref else "")
                    + f"; accuracy on unseen test data went from {pct(before.get('test'))} to {pct(after.get('test'))}. "
                    + ("A good unlearning method matches the retrained reference on every column." if ref else
                       "Without a retrained reference, compare the forget set with the test set of other classes.")
                    + "</p>")
        parts += [sentence, table("Accuracy before and after unlearning",
                                  ["Model", "Forget set", "Kept training data", "Test set", "Test, other classes"], rows)]
    else:
        parts.append("<p class=\"note\">No accuracies were measured (a step failed before).</p>")
    method = target.get("method") or {}
    details = method.get("details") or {}
    timings = target.get("timings") or {}
    cost = [("Method", esc(method.get("name") or DASH)),
            ("Time to unlearn", seconds(method.get("seconds", timings.get("unlearn"))))]
    # The harness's own names first, then the schema docstring's (both are version 1 documents).
    total = _first(details, "total_steps", "batches_total")
    share = _first(details, "fraction_of_batches_removed", "fraction_removed")
    log_bytes = _first(details, "log_bytes", "log_bytes_read")
    if details.get("batches_removed") is not None:
        cost.append(("Training batches removed", f"{esc(details['batches_removed'])}"
                     + (f" of {esc(total)}" if total is not None else "")
                     + (f" ({pct(share)})" if isinstance(share, (int, float)) else "")))
    if details.get("repair_epochs") is not None:
        cost.append(("Repair epochs on kept data", esc(details["repair_epochs"])))
    if isinstance(log_bytes, (int, float)):
        cost.append(("Update log kept for unlearning", size(log_bytes)))
    for key, label in (("reference", "Time to retrain the reference"), ("attacks", "Time for the attacks")):
        if timings.get(key) is not None:
            cost.append((label, seconds(timings[key])))
    rows = [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in cost]
    parts.append(f"<div class=\"table-wrap\"><table class=\"kv\"><caption>Cost of the unlearning step</caption>"
                 f"<tbody>{''.join(rows)}</tbody></table></div>")
    return "".join(parts)


def _first(details: dict, *keys: str):
    return next((details[k] for k in keys if details.get(k) is not None), None)


def membership(target: dict, salt: str) -> str:
    attacks = target.get("membership") or []
    parts = ["<h3>Membership inference</h3>"]
    if not attacks:
        return parts[0] + "<p class=\"note\">No membership inference attack ran for this request.</p>"
    parts.append("<p>Each attack tries to tell the data to forget (members) from similar data the model never saw "
                 "(non-members). On the original model it should succeed; after unlearning it should do no better "
                 "than on the retrained reference. The curves use logarithmic axes so that the rare, confident "
                 "hits at a low false positive rate, the ones that expose individuals, are visible.</p>")
    from reports.figures import roc_svg  # matplotlib loads only when a report is drawn, not on `import reports`

    figures, rows = [], []
    for i, attack in enumerate(attacks):
        label = attack.get("label") or attack["attack"]
        curves = {role: (attack.get(role) or {}).get("roc") for role in ROLES}
        if any(curves.values()):
            figures.append(f"<figure>{roc_svg(curves, label, f'{salt}-{i}')}<figcaption>ROC of "
                           f"{esc(label)}: forget set against held-out data, log-log axes.</figcaption></figure>")
        present = [role for role in ROLES if attack.get(role)]
        for j, role in enumerate(present):
            m = attack[role]
            eps = num(m.get("epsilon_lower_bound"))
            ci = interval(m.get("epsilon_ci95"))
            first = (f"<td rowspan=\"{len(present)}\">{esc(label)}</td>" if j == 0 else "")
            ci_html = f'<br><span class="note">{ci}</span>' if ci else ""
            rows.append(f"<tr>{first}<td>{SHORT_NAMES[role]}</td><td class=\"n\">{num(m.get('auc'), 3)}</td>"
                        f"<td class=\"n\">{pct(m.get('tpr_at_1pct_fpr'))}</td><td class=\"n\">{pct(m.get('tpr_at_0.1pct_fpr'))}</td>"
                        f"<td class=\"n\">{num(m.get('advantage'), 3)}</td><td class=\"n\">{eps}"
                        f"{ci_html}</td></tr>")
    if figures:
        parts.append(f"<div class=\"figures\">{''.join(figures)}</div>")
    parts.append(table("Membership inference metrics",
                       ["Attack", "Model", "AUC", "TPR at 1% FPR", "TPR at 0.1% FPR", "Advantage",
                        "&epsilon; lower bound (95% CI)"], rows, numeric_from=2))
    parts.append("<p class=\"note\">AUC 0.5 and advantage 0 mean the attack does no better than guessing. "
                 "The &epsilon; lower bound turns the attack's true and false positive rates into the smallest "
                 "differential-privacy &epsilon; consistent with them (Jagielski et al. 2020), with a Clopper-Pearson "
                 "95% interval; the real privacy loss may be larger.</p>")
    return "".join(parts)


def evidence(target: dict, salt: str) -> str:
    """The tests behind the verdict, and the per-example picture."""
    tests = target.get("tests") or []
    parts = ["<h3>Evidence behind the verdict</h3>"]
    if not tests:
        return parts[0] + "<p class=\"note\">No test ran for this request.</p>"
    parts.append("<p>Each test asks whether a model still knows the data to forget. It runs on the original model "
                 "(the power check: it must detect the data there, or the answer is inconclusive) and on the "
                 "unlearned model (where it must no longer detect them). The p-values are one-sided and "
                 "Holm-corrected over the tests, so the verdict keeps its error rate.</p>")
    rows = []
    for t in tests:
        retrained = t.get("effect_retrained") or []
        spread = (f"{num(min(retrained))} to {num(max(retrained))}" if retrained else DASH)
        rows.append(f"<tr><td>{esc(t.get('label') or t['name'])}</td><td class=\"n\">{num(t.get('effect_original'))}</td>"
                    f"<td class=\"n\">{pval(t.get('p_original_holm'))}</td><td class=\"n\">{num(t.get('effect_unlearned'))}</td>"
                    f"<td class=\"n\">{pval(t.get('p_unlearned_holm'))}</td><td class=\"n\">{spread}</td>"
                    f"<td class=\"n\">{num(t.get('residual'))}</td></tr>")
    parts.append(table("Tests of the forget set", ["Test", "Original: effect", "p", "Unlearned: effect", "p",
                                                   "Retrained: effect", "Residual"], rows))
    parts.append("<p class=\"note\">Membership effect: mean per-example statistic of the forget set minus that of "
                 "held-out data under the same model (0 for a model that never trained on them). Class tests: the "
                 "share of forget examples classified correctly, or of inversions recognised; the null is one "
                 "example more than the best retrained model reached.</p>")
    per_example = target.get("per_example") or {}
    if per_example:
        from reports.figures import per_example_svg

        svg = per_example_svg(per_example, f"{salt}-pe")
        if svg:
            parts.append(f"<figure>{svg}<figcaption>The per-example membership statistic of the forget examples "
                         "under the original, unlearned and retrained models (and of held-out data under the "
                         "original). Forgotten data sit where the retrained models put them.</figcaption></figure>")
    return "".join(parts)


def inversion(target: dict, base_dir: Path) -> str:
    inv = target.get("inversion")
    head = "<h3>Model inversion</h3>"
    if not inv:
        why = ("it reconstructs a whole class, and this request lists individual examples"
               if not (target.get("forget") or {}).get("classes") else "it was not requested or a step failed")
        return head + f"<p class=\"note\">Model inversion was not run for this request: {why}.</p>"
    classes = ", ".join(esc(c) for c in inv.get("classes") or [])
    goal = ("resemble the class no more than those from the retrained reference" if inv.get("reference")
            else "no longer resemble the class (no retrained reference was made to compare with)")
    judge = (f"An independent classifier ({esc(inv['evaluator'])}) judges them" if isinstance(inv.get("evaluator"), str)
             else "An independent classifier judges them")
    parts = [head, f"<p>Model inversion starts from a blank image and changes it until the model is confident it "
                   f"shows class {classes} (Fredrikson et al. 2015). After unlearning, the reconstructions should "
                   f"{goal}. {judge} (attack accuracy).</p>"]
    blocks, rows = [], []
    for role in ROLES:
        part = inv.get(role)
        if not part:
            continue
        images = []
        for rel in part.get("images") or []:
            img = embed(rel, base_dir)
            if img.data_uri:
                images.append(f"<img src=\"{img.data_uri}\" alt=\"reconstruction from the {ROLE_NAMES[role]}: "
                              f"{esc(Path(rel).name)}\">")
            else:
                images.append(f"<div class=\"missing-image\" title=\"{esc(rel)}\">image {esc(img.problem)}: "
                              f"{esc(Path(rel).name)}</div>")
        gallery = "".join(images) or "<span class=\"note\">no images were saved</span>"
        blocks.append(f"<div class=\"inv-role\"><h4>{ROLE_NAMES[role].capitalize()}</h4>"
                      f"<div class=\"inv-images\">{gallery}</div><div class=\"note\">attack accuracy "
                      f"{pct(part.get('attack_accuracy'))}, similarity {num(part.get('similarity'))}, "
                      f"confidence {pct(part.get('confidence'))}</div></div>")
        rows.append(f"<tr><td>{SHORT_NAMES[role]}</td><td class=\"n\">{pct(part.get('attack_accuracy'))}</td>"
                    f"<td class=\"n\">{num(part.get('similarity'))}</td><td class=\"n\">{pct(part.get('confidence'))}</td></tr>")
    parts.append(f"<div class=\"inv-grid\">{''.join(blocks)}</div>")
    parts.append(table("Model inversion scores", ["Model", "Attack accuracy", "Similarity", "Confidence"], rows))
    parts.append("<p class=\"note\">Attack accuracy: the share of reconstructions an independent classifier labels "
                 "as the forgotten class. Similarity: how close the reconstructions are to real examples of the class "
                 "(higher is closer). Confidence: the attacked model's own confidence in the class.</p>")
    return "".join(parts)


def target_section(target: dict, index: int, base_dir: Path) -> str:
    state = status(target)
    error = (f"<div class=\"verdict verdict-error\"><strong>A step failed:</strong> {esc(target['error'])}</div>"
             if target.get("error") is not None else "")
    return (f"<section class=\"target-section\" id=\"{anchor(target['name'], index)}\">"
            f"<h2><span class=\"badge badge-{state}\">{state.upper()}</span> Forget request "
            f"<code>{esc(target['name'])}</code></h2>{error}{describe_leakage(target)}"
            f"{evidence(target, f't{index}')}{forget_quality(target)}{membership(target, f't{index}')}{inversion(target, base_dir)}</section>")
