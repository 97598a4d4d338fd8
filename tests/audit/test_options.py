"""``audit run``'s options: flat names (CLI, config files, ``audit.run``) land in their groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.errors import InputError
from audit.options import GROUPS, AuditOptions


def test_flat_names_land_in_their_groups():
    opts = AuditOptions.from_flat("model.pt", "class=3", alpha=0.01, retrains=8, mia_attacks=["loss"],
                                  executor="ray", out="somewhere", original="orig.pt", seed=7, method="auto")
    assert opts.inputs.model == Path("model.pt") and opts.inputs.original == Path("orig.pt")
    assert (opts.verdict.alpha, opts.verdict.retrains) == (0.01, 8)
    assert opts.attack.mia_attacks == ["loss"] and opts.execution.executor == "ray"
    assert opts.output.out == Path("somewhere") and (opts.seed, opts.forget) == (7, ["class=3"])
    assert opts.quiet().execution.show_progress is False and opts.execution.show_progress is True


def test_every_flat_name_belongs_to_exactly_one_group():
    names = [f for kind in GROUPS.values() for f in kind.__dataclass_fields__]
    assert len(names) == len(set(names))
    assert AuditOptions.names() == {"method", "seed"} | set(names) - {"model"}


@pytest.mark.parametrize("name", ["retrain", "model", "forget", "verdict"])
def test_an_unknown_name_is_bad_input_that_lists_the_known_ones(name):
    with pytest.raises(InputError, match=f"unknown option '{name}'; known: alpha, arch"):
        AuditOptions.from_flat("model.pt", "class=3", **{name: 1})


def test_the_mia_attacks_run_only_with_the_mia_family():
    assert AuditOptions.from_flat("m.pt", "class=3", attacks=["inversion"]).mia_attacks == []
    assert AuditOptions.from_flat("m.pt", "class=3").mia_attacks == ["loss", "lira_online", "rmia"]
