"""The summary: the request, the method and the verdict per target, in a data-protection officer's words."""

from __future__ import annotations

from reports.fmt import DASH, anchor, esc, gate_order, num, pval, status, target_order

METHOD_WORDS = {
    "amnesiac": "amnesiac unlearning: the training updates recorded for the batches that held these data were "
                "subtracted from the model (Graves et al. 2021)",
    "relabel": "relabelling: the data were given random wrong labels and the model trained on, so that it "
               "unlearns them (Graves et al. 2021)",
    "finetune": "fine-tuning: the model trained on only the data it keeps",
    "retrain": "retraining from scratch without these data (exact unlearning)",
}
VERDICT_WORDS = {
    "pass": "A request passes when its data were detectable before unlearning and are not after (or, where the "
            "audit allows it, when the attacks could not tell), and it meets every threshold set for this audit "
            "(the gates).",
    "fail": "A request fails when the unlearned model still shows its data, when the attacks could not tell "
            "(inconclusive, unless the audit lets inconclusive requests pass), or when it misses a threshold "
            "set for this audit (a gate).",
    "error": "A step of the audit failed, so at least one forget request could not be assessed; a failed "
             "step never counts as a pass.",
}


def describe_request(target: dict, class_names: list | None) -> str:
    """"all 137 training examples of class 3 ("three")" or "50 individually listed training examples"."""
    forget = target.get("forget") or {}
    n = forget.get("n")
    count = f"{int(n):,} " if isinstance(n, (int, float)) else ""
    classes = forget.get("classes")
    if classes:
        named = []
        for c in classes:
            label = esc(c)
            if class_names and isinstance(c, int) and 0 <= c < len(class_names) and str(class_names[c]) != str(c):
                label += f" (&ldquo;{esc(class_names[c])}&rdquo;)"
            named.append(label)
        word = "class" if len(classes) == 1 else "classes"
        return f"all {count}training examples of {word} {', '.join(named)}"
    return f"{count}individually listed training examples (<code>{esc(forget.get('spec') or target['name'])}</code>)"


def describe_method(target: dict) -> str:
    method = target.get("method") or {}
    name = method.get("name")
    if not name:
        return "not reached (an earlier step failed)"
    words = METHOD_WORDS.get(name, f"<code>{esc(name)}</code>")
    details = method.get("details") or {}
    if name == "amnesiac" and details.get("repair_epochs"):
        words += f", then repaired by {esc(details['repair_epochs'])} epoch(s) of training on the kept data"
    reason = f" Chosen because {esc(method['reason'])}." if method.get("reason") else ""
    return f"{words}.{reason}"


TARGET_VERDICT_WORDS = {
    "pass": "Pass: before unlearning the attacks detected these data; after unlearning they no longer do, and "
            "the drop shows that they are gone.",
    "fail": "Fail: the unlearned model still shows these data to the attacks.",
    "inconclusive": "Inconclusive: the attacks could not detect these data even in the original model, or could "
                    "not show that the unlearned model lost them, so they cannot confirm that the data are gone. This "
                    "is not evidence of erasure.",
}


def describe_leakage(target: dict) -> str:
    """The target's verdict, why, the power statement and the residual leakage, in plain words."""
    verdict = target.get("verdict")
    if target.get("error") is not None or verdict not in TARGET_VERDICT_WORDS:
        return ("<p class=\"headline\">Verdict: <span class=\"value\">not reached</span>"
                + (" because a step failed." if target.get("error") is not None else ".") + "</p>")
    parts = [f"<p class=\"headline\">Verdict: <span class=\"value verdict-word-{verdict}\">{verdict.upper()}</span></p>",
             f"<p>{TARGET_VERDICT_WORDS[verdict]} In detail: {esc(target.get('verdict_reason') or DASH)}.</p>"]
    power = target.get("power_p_value")
    alpha = target.get("alpha")
    if power is not None:
        seen = "told the forget set from unseen data" if alpha is None or power <= alpha else \
            "could not tell the forget set from unseen data"
        parts.append(f"<p><strong>Power check:</strong> before unlearning the attacks {seen} at p = {pval(power)} "
                     f"(significance level {num(alpha, 2)}, Holm-corrected over {len(target.get('tests') or [])} "
                     f"test(s)). After unlearning: p = {pval(target.get('p_value'))}.{_null_words(target)}</p>")
    if target.get("advice"):
        parts.append(f"<p class=\"note\">{esc(target['advice'])}</p>")
    value = target.get("residual_leakage")
    if value is not None:
        ci = target.get("residual_leakage_ci95") or [None, None]
        parts.append(f"<p>Residual leakage: <strong>{num(value)}</strong> (95% interval {num(ci[0])} to "
                     f"{num(ci[1])}) <span class=\"note\">the unlearned model's membership signal as a share of the "
                     "original's: 0 means none is left, 1 as much as before unlearning</span></p>")
    over = target.get("overforgetting")
    if over is not None:
        parts.append(f"<p>Over-forgetting: <strong>{num(over)}</strong> (p = {pval(target.get('overforgetting_p_value'))})"
                     " <span class=\"note\">positive when the forget set looks less like training data than under "
                     "retrained models: the deletion itself is then visible</span></p>")
    return "".join(parts)


NULL_WORDS = {
    "retrained": " The membership test compared each model with the retrained models, example by example.",
    "permutation": " The membership test compared each model's forget set with held-out data under that model alone "
                   "(no retrained models: this null ignores what the data split and the reference models share).",
}


def _null_words(target: dict) -> str:
    for test in target.get("tests") or []:
        if test.get("name") == "membership":
            return esc(NULL_WORDS.get((test.get("detail") or {}).get("null"), ""))
    return ""


def gate_table(target: dict) -> str:
    gates = gate_order(target["gates"])
    if not gates:
        return "<p class=\"note\">No gates were set for this audit, so nothing could fail except a step.</p>"
    rows = []
    for gate in gates:
        result = "pass" if gate["passed"] else "fail"
        rows.append(f"<tr class=\"{'' if gate['passed'] else 'failed'}\"><td><span class=\"badge badge-{result}\">"
                    f"{result.upper()}</span></td><td><code>{esc(gate['expr'])}</code></td>"
                    f"<td class=\"n\">{num(gate.get('value'), 3)}</td><td>{esc(gate.get('message') or DASH)}</td></tr>")
    return ("<div class=\"table-wrap\"><table class=\"gates\"><caption>Gates for "
            f"{esc(target['name'])}</caption><thead><tr><th>Result</th><th>Gate</th><th class=\"n\">Value</th>"
            f"<th>Meaning</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def target_card(target: dict, index: int, class_names: list | None) -> str:
    state = status(target)
    error = (f"<p><strong>A step failed:</strong> {esc(target['error'])}</p>" if target.get("error") is not None else "")
    return (f"<article class=\"target-card {state}\"><h4><span class=\"badge badge-{state}\">{state.upper()}</span> "
            f"<a href=\"#{anchor(target['name'], index)}\">{esc(target['name'])}</a></h4>"
            f"<p><strong>Request:</strong> forget {describe_request(target, class_names)}.</p>"
            f"<p><strong>Method:</strong> {describe_method(target)}</p>{error}"
            f"{describe_leakage(target)}{gate_table(target)}</article>")


def render_summary(doc: dict) -> str:
    prov = doc["provenance"]
    model = prov.get("model") or {}
    data = prov.get("data") or {}
    targets = doc["targets"]
    indexed = {id(t): i for i, t in enumerate(targets)}
    verdict = doc["verdict"]
    failing = sum(1 for t in targets if t.get("error") is not None or not t["passed"])
    let_through = sum(1 for t in targets if t["passed"] and t.get("verdict") == "inconclusive")
    count = (f"{failing} of {len(targets)} forget request{'s' if len(targets) != 1 else ''} "
             f"did not pass. " if failing else
             f"All {len(targets)} forget request{'s' if len(targets) != 1 else ''} passed. ")
    if let_through:
        count += (f"{let_through} of them passed only because this audit lets inconclusive requests through: "
                  "the attacks could not see their data even before unlearning. ")
    params = model.get("parameters")
    model_words = (f"the model <code>{esc(model.get('path') or 'model')}</code>"
                   + (f" ({esc(model.get('arch'))}" if model.get("arch") else "")
                   + (f", {int(params):,} parameters" if isinstance(params, (int, float)) else "")
                   + (")" if model.get("arch") else ""))
    data_words = (f", trained on the <code>{esc(data.get('spec'))}</code> data set"
                  + (f" ({int(data['n_train']):,} training examples)" if isinstance(data.get("n_train"), (int, float)) else "")
                  if data.get("spec") else "")
    cards = "".join(target_card(t, indexed[id(t)], data.get("class_names")) for t in target_order(targets))
    notes = doc.get("notes") or []
    notes_html = ("<h3>Notes</h3><ul class=\"notes\">" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
                  if notes else "")
    # A warning (e.g. a model near chance, whose verdict measures nothing) stands beside the verdict, not below.
    warnings_html = "".join(f"<div class=\"verdict verdict-fail\"><strong>Warning:</strong> "
                            f"{esc(n.removeprefix('Warning:').strip())}</div>"
                            for n in notes if isinstance(n, str) and n.startswith("Warning:"))
    return (f"<section id=\"summary\"><h2>Summary</h2>"
            f"<div class=\"verdict verdict-{verdict}\"><strong>Verdict: {verdict.upper()}</strong> &mdash; "
            f"{count}{VERDICT_WORDS[verdict]}</div>{warnings_html}"
            f"<p>This audit checked whether {model_words}{data_words} has forgotten the data it was asked to forget. "
            f"For each request the model was unlearned, then attacked before and after, and the results were compared "
            f"with a model retrained without the data where one was available. Requests that failed are listed first.</p>"
            f"<h3>Verdict per forget request</h3>{cards}{notes_html}</section>")
