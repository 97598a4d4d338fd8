"""Run-level sections: method and limits (with the literature and the law), and provenance."""

from __future__ import annotations

from reports.fmt import DASH, esc

INVERSION_ASSUMES = ("white-box access to the model's gradients; reconstructs one representative input per class, "
                     "not a particular person's record (Fredrikson et al. 2015, MI-Face)")

# Attacks that train reference (shadow) models; names as in attacks.ATTACKS.
REFERENCE_ATTACKS = {"lira_online", "lira_offline", "rmia", "rmia_offline", "shadow"}

LITERATURE = [
    "L. Graves, V. Nagisetty, V. Ganesh. Amnesiac Machine Learning. AAAI 2021 (arXiv:2010.10981).",
    "N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tram&egrave;r. Membership Inference Attacks From First "
    "Principles (LiRA). IEEE S&amp;P 2022.",
    "S. Zarifzadeh, P. Liu, R. Shokri. Low-Cost High-Power Membership Inference Attacks (RMIA). ICML 2024.",
    "R. Shokri, M. Stronati, C. Song, V. Shmatikov. Membership Inference Attacks Against Machine Learning Models. "
    "IEEE S&amp;P 2017.",
    "S. Yeom, I. Giacomelli, M. Fredrikson, S. Jha. Privacy Risk in Machine Learning: Analyzing the Connection to "
    "Overfitting. IEEE CSF 2018.",
    "M. Fredrikson, S. Jha, T. Ristenpart. Model Inversion Attacks that Exploit Confidence Information and Basic "
    "Countermeasures. ACM CCS 2015.",
    "M. Jagielski, J. Ullman, A. Oprea. Auditing Differentially Private Machine Learning: How Private is Private SGD? "
    "NeurIPS 2020.",
    "T. Steinke, M. Nasr, M. Jagielski. Privacy Auditing with One (1) Training Run. NeurIPS 2023.",
    "A. Thudi, H. Jia, I. Shumailov, N. Papernot. On the Necessity of Auditable Algorithmic Definitions for Machine "
    "Unlearning. USENIX Security 2022.",
    "B. Zhang, Z. Chen, C. Shen, J. Li. Verification of Machine Unlearning is Fragile. ICML 2024.",
    "J. Hayes, I. Shumailov, E. Triantafillou, A. Khalifa, N. Papernot. Inexact Unlearning Needs More Careful "
    "Evaluations to Avoid a False Sense of Privacy. IEEE SaTML 2025.",
    "S. Holm. A Simple Sequentially Rejective Multiple Test Procedure. Scandinavian Journal of Statistics, 1979.",
    "C. Fan, J. Liu, Y. Zhang, E. Wong, D. Wei, S. Liu. SalUn: Empowering Machine Unlearning via Gradient-based "
    "Weight Saliency. ICLR 2024.",
    "Regulation (EU) 2016/679 (GDPR), Article 17: Right to erasure (&lsquo;right to be forgotten&rsquo;).",
    "European Data Protection Board. Opinion 28/2024 on certain data protection aspects related to the processing "
    "of personal data in the context of AI models. December 2024.",
    "Information Commissioner's Office (UK). Guidance on AI and data protection: how do we ensure individual rights "
    "in our AI systems?",
]


def method_and_limits(doc: dict) -> str:
    config = doc["config"]
    seen: dict[str, tuple[str, str]] = {}
    inversion_ran = False
    for target in doc["targets"]:
        for attack in target.get("membership") or []:
            seen.setdefault(attack["attack"], (attack.get("label") or attack["attack"], attack.get("assumes") or DASH))
        inversion_ran = inversion_ran or bool(target.get("inversion"))
    items = [f"<li><strong>{esc(label)}</strong>: assumes {esc(assumes)}.</li>" for label, assumes in seen.values()]
    if inversion_ran:
        items.append(f"<li><strong>Model inversion</strong>: assumes {INVERSION_ASSUMES}.</li>")
    attacks = (f"<ul>{''.join(items)}</ul>" if items else "<p class=\"note\">No attack ran.</p>")
    n_ref = config.get("reference_models")
    if not set(config.get("mia_attacks") or []) & REFERENCE_ATTACKS:
        n_ref = None  # only the LOSS attack ran: no shadow models were trained
    shadow = (f" The membership attacks that need them trained {esc(n_ref)} reference (shadow) models on the auditor's "
              "own data." if n_ref else "")
    if config.get("reference") == "retrain":
        k = config.get("retrains")
        reference = ("<p>The yardstick is a set of models <strong>retrained from scratch without the data to "
                     f"forget</strong>{f' ({esc(k)} of them)' if k else ''}, with the original training recipe and "
                     "seeds other than the original's: the result that exact erasure would give, and its spread from "
                     "model to model. An unlearned model is judged good when the attacks cannot tell it from these; "
                     f"being merely less attackable than the original is not enough.{shadow}</p>")
    else:
        reference = ("<p><strong>No retrained reference was used.</strong> Scores are absolute: attack success is "
                     "compared with chance instead of with a model that never saw the data. This overstates the residual "
                     "leakage for data a model would have predicted well anyway (for example typical examples of a "
                     f"common class), and should be read as an upper estimate.{shadow}</p>")
    return f"""<section id="method"><h2>Method and limits</h2>
<h3>What each attack assumes</h3>{attacks}
<h3>What the reference is</h3>{reference}
<h3>How the verdict is reached</h3>
<p>Each forget request gets one of three verdicts. The same tests run on the <strong>original</strong> model first: if
they cannot detect the data to forget there (the power check), the verdict is <strong>inconclusive</strong>, because
an attack that cannot see the data before unlearning cannot confirm they are gone. Otherwise the verdict is
<strong>fail</strong> when a test still detects the data in the unlearned model. A <strong>pass</strong> needs more
than no test detecting them: the removal itself must be shown, with the residual leakage's 95% upper bound below
{esc(config.get('max_residual', 0.5))}; otherwise the verdict is inconclusive. Membership is tested per example (Hayes
et al., SaTML 2025): each example's confidence under the model is compared with its own confidence under reference
models that never trained on it, and the forget set's average is compared with held-out data. With retrained models
(the default), each model is compared with them example by example, so that what the split of the data and the
reference models share cancels, and a permutation over examples calibrates the difference (the
<em>retrained</em> null); without them, each model's own statistic is permuted (the <em>permutation</em> null). Class requests add the accuracy on the
forgotten class and model inversion, each against the retrained models. Holm's correction runs over the tests, at
significance level {esc(config.get('alpha', 0.05))}. Inconclusive requests {'pass' if config.get('inconclusive') == 'pass' else 'fail'}
this audit, by its policy (<code>--inconclusive</code>).</p>
<h3>What this audit cannot prove</h3><ul>
<li>A pass is evidence, not proof. It shows that these attacks, with these assumptions and this data, could not tell the
unlearned model from the reference beyond the stated thresholds. Stronger or future attacks may do better, and the
&epsilon; values are lower bounds: the true privacy loss may be larger.</li>
<li>Approximate unlearning cannot be verified from the final model alone. The same weights can be reached by training
with or without a given example, so a model owner could forge a proof of unlearning (Thudi et al. 2022), and
verification methods based on the model's behaviour can be evaded by a dishonest provider (Zhang et al., ICML 2024).
This audit therefore assumes that the model it received is the one that was trained on the data and the one that will
be deployed; the hashes under Provenance tie the report to those exact files.</li>
<li>The membership figures describe the data to forget as a group. A few individual examples may still be exposed
even when the group looks safe; small forget sets give wide intervals.</li>
<li>Model inversion reconstructs what a class looks like on average; it does not test whether a specific person's
record can be recovered.</li>
</ul>
<h3>Regulatory context</h3>
<p><strong>GDPR Article 17</strong> gives people the right to have their personal data erased. When those data were
used to train a model, the model may still hold them. The <strong>EDPB Opinion 28/2024</strong> considers a model
anonymous only if the likelihood of extracting personal data from it, or of inferring whether someone's data were used
(membership inference, model inversion), is insignificant, and names resistance to such attacks as evidence a controller
may document. The <strong>ICO's guidance</strong> on individual rights in AI systems likewise expects erasure requests
to be considered for models, not only for training data sets. This report documents one such test; it supports, but
does not replace, the controller's own assessment and is not legal advice.</p>
<h3>Literature</h3><ol class="literature">{''.join(f'<li>{ref}</li>' for ref in LITERATURE)}</ol>
</section>"""


def _kv(caption: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<div class=\"table-wrap\"><table class=\"kv\"><caption>{caption}</caption><tbody>{body}</tbody></table></div>"


def _code(value) -> str:
    return DASH if value in (None, "") else f"<code>{esc(value)}</code>"


def _plain(value) -> str:
    if isinstance(value, list):
        return esc(", ".join(str(v) for v in value)) if value else DASH
    return DASH if value in (None, "") else esc(value)


def provenance(doc: dict) -> str:
    prov, tool, config = doc["provenance"], doc["tool"], doc["config"]
    model, data, machine = prov.get("model") or {}, prov.get("data") or {}, prov.get("machine") or {}
    libraries = tool.get("libraries") or {}
    run_rows = [("Date (UTC)", _plain(doc.get("created"))), ("Command", _code(prov.get("command"))),
                ("Seed", _plain(prov.get("seed"))), ("Tool", _plain(f"{tool.get('name', 'amnesia-audit')} {tool.get('version') or ''}")),
                ("Libraries", _plain(", ".join(f"{k} {v}" for k, v in libraries.items() if v))),
                ("Machine", _plain(", ".join(str(x) for x in (machine.get("platform"), machine.get("cpus") and f"{machine['cpus']} CPUs") if x))),
                ("Exit code", _plain(doc.get("exit_code")))]
    model_rows = [("Model file", _code(model.get("path"))), ("Model SHA-256", _code(model.get("sha256"))),
                  ("Architecture", _plain(model.get("arch"))), ("Parameters", _plain(model.get("parameters"))),
                  ("Data", _code(data.get("spec"))), ("Data SHA-256", _code(data.get("sha256"))),
                  ("Training / test examples", _plain(f"{data.get('n_train', DASH)} / {data.get('n_test', DASH)}")),
                  ("Classes", _plain(data.get("num_classes")))]
    config_rows = [("Unlearning method", _plain(config.get("method"))), ("Reference", _plain(config.get("reference"))),
                   ("Attacks", _plain(config.get("attacks"))), ("Membership attacks", _plain(config.get("mia_attacks"))),
                   ("Reference models", _plain(config.get("reference_models"))),
                   ("Retrained models", _plain(config.get("retrains"))),
                   ("Significance level", _plain(config.get("alpha"))),
                   ("Largest residual upper bound for a pass", _plain(config.get("max_residual"))),
                   ("Inconclusive requests", _plain(config.get("inconclusive"))),
                   ("Gates", _code(", ".join(config.get("gates") or []) or None))]
    rerun = (f"<p>To reproduce, run the same command on the files with these hashes:</p><pre>{esc(prov['command'])}</pre>"
             if prov.get("command") else "")
    return (f"<section id=\"provenance\"><h2>Provenance</h2>{rerun}{_kv('The run', run_rows)}"
            f"{_kv('Model and data', model_rows)}{_kv('Audit settings', config_rows)}</section>")
