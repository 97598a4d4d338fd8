"""One set of attack defaults, owned by attacks.registry: the library, the audit and the
command line's help all read (or say) the same reference-model count and default attacks."""

from __future__ import annotations

import inspect

from typer.testing import CliRunner

from attacks import registry, run_membership_attacks, shadow_model_scores, train_reference_models
from audit.attacking import MembershipOutcome
from audit.cli import app
from audit.options import AuditOptions


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_library_and_audit_share_the_registry_defaults():
    assert registry.DEFAULT_ATTACKS == ("loss", "lira_online", "rmia") and registry.DEFAULT_REFERENCE_MODELS == 16
    assert _default(run_membership_attacks, "attacks") == registry.DEFAULT_ATTACKS
    assert _default(run_membership_attacks, "num_reference_models") == registry.DEFAULT_REFERENCE_MODELS
    # The building blocks keep no default of their own: the count is their caller's.
    assert _default(train_reference_models, "num_models") is inspect.Parameter.empty
    assert _default(shadow_model_scores, "num_shadow_models") is inspect.Parameter.empty
    assert registry.ModelAccess(model=None, x=None).num_models == registry.DEFAULT_REFERENCE_MODELS
    options = AuditOptions.from_flat("model.pt", ["class=3"])
    assert options.mia_attacks == list(registry.DEFAULT_ATTACKS)
    assert options.attack.reference_models == registry.DEFAULT_REFERENCE_MODELS


def test_which_attacks_need_reference_models_is_a_property_of_each_attack():
    assert registry.NEEDS_REFERENCE == {"lira_online", "lira_offline", "rmia", "rmia_offline", "shadow"}
    assert registry.SIGNAL_REFERENCE == registry.NEEDS_REFERENCE - {"shadow"}  # the shadow attack trains its own
    assert [name for name, a in registry.ATTACKS.items() if a.scores_a_subset] == ["label_only"]
    for name, attack in registry.ATTACKS.items():
        outcome = MembershipOutcome(name, {"original": None}).to_dict()
        assert outcome["needs_reference"] is attack.needs_reference and outcome["label"] == attack.label


def test_run_help_states_the_registry_defaults():
    result = CliRunner().invoke(app, ["run", "--help"])
    assert result.exit_code == 0, result.output
    packed = "".join(result.output.split())  # the help wraps anywhere, names included
    mia = packed[packed.index("--miaATTACKS"):][:200]
    assert ",".join(registry.ATTACKS) in mia and f"(default{','.join(registry.DEFAULT_ATTACKS)})" in mia
    models = packed[packed.index("--reference-modelsINTEGER"):][:200]
    assert f"(default{registry.DEFAULT_REFERENCE_MODELS};cached)" in models
