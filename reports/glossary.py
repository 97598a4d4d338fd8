"""The report's glossary: every term of the trade the page uses, in one sentence a reader without
statistics can follow. Each use of a term links to its entry (``#g-<key>``) and carries the same
sentence as a hover title, so the explanation is where the term first appears."""

from __future__ import annotations

#: key -> (the term as the glossary heads it, what it means). Order: as a reader meets them.
TERMS: dict[str, tuple[str, str]] = {
    "how-sure": ("How sure", "The audit's confidence in words, from a fixed scale derived from the evidence: strong "
                 "evidence, evidence, weak evidence, or no evidence either way (see docs/reports.md)."),
    "inconclusive": ("Inconclusive", "The attacks could not decide: either they could not see the data even in the "
                     "original model, or the data look gone but their removal is not shown with enough certainty. "
                     "Not evidence of erasure; it fails the audit unless --inconclusive pass was chosen."),
    "not-memorised": ("Not memorised", "The original model never memorised the request detectably: compared with "
                      "reference models that never saw the data, its membership AUC is bounded close to 0.5 (no "
                      "signal). There was nothing measurable to remove; it passes unless --not-memorised fail was "
                      "chosen."),
    "power-check": ("Power check", "The same tests run on the original model first. If they cannot detect the data "
                    "there, they cannot confirm the data are gone after unlearning, and the verdict is "
                    "inconclusive."),
    "p-value": ("p-value", "How likely a result this strong would be if the model had never seen the data. Small "
                "(at most the significance level) means the data were detected."),
    "alpha": ("Significance level (alpha)", "The largest p-value that counts as a detection, 0.05 unless set with "
              "--alpha: the accepted chance of a false alarm."),
    "holm": ("Holm's correction", "When several tests look at one request, each p-value is raised so that the "
             "chance of any false alarm stays at the significance level (Holm 1979)."),
    "residual-leakage": ("Residual leakage", "How much of the original model's membership signal the unlearned "
                         "model still shows: 0 means none is left, 1 as much as before unlearning. Above 1 the "
                         "unlearning step made the data more visible, not less."),
    "upper-bound": ("95% upper bound", "The residual leakage is measured with noise; with 95% confidence it is at "
                    "most this. A pass needs this bound below the margin (--max-residual, 0.5 by default)."),
    "unbounded": ("Unbounded", "No finite upper bound could be computed (the original's signal was too weak to "
                  "divide by), or the figure was not measured. The command line writes the same; a gate on it "
                  "fails closed."),
    "over-forgetting": ("Over-forgetting", "How far below the retrained models the unlearned model puts the data, "
                        "on the residual leakage's scale. Negative or near 0 is normal; clearly positive means the "
                        "deletion itself is visible to an attacker."),
    "membership-auc": ("Membership AUC", "How often the per-example test ranks a forgotten example above an unseen "
                       "one under the original model: 0.5 is no signal, 1 perfect memorisation."),
    "u-lira": ("U-LiRA (per-example membership test)", "Each example's confidence under the audited model is "
               "compared with its confidence under reference models that never trained on it (Hayes et al. 2025, "
               "after LiRA, Carlini et al. 2022); the forget set's average is compared with unseen data."),
    "null": ("Null (what the evidence was judged against)", "pool: the shared reference models that never saw each "
             "example; retrained: models retrained without the data to forget; permutation: the model's own "
             "statistics shuffled, with no reference model."),
    "given": ("Audited as given (method \"given\")", "With --original, the model was unlearned elsewhere and audited "
              "as it was handed over: no unlearning step ran in this audit."),
    "gate": ("Gate", "A threshold set for the audit (--fail-on). Each gate is a fail-if rule: "
             "'residual_leakage_upper>0.5' fails when the bound is above 0.5. A figure without a finite value "
             "fails its gate (fails closed)."),
    "cached": ("Cached", "The retrained models were read from the reference-model cache, trained by an earlier run "
               "with the same data, recipe and seed; the time shown is the time to load them, not to train them."),
}


def title(key: str) -> str:
    """The hover text of ``key``: its meaning."""
    return TERMS[key][1]
