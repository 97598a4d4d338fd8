"""junit.xml: one test case per target and gate, the verdict first; failed gates are failures, failed steps errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.reports.report_documents import GATE, build_document, step_failed

import reports
from reports.reading import validate


def render_junit(doc: dict) -> str:
    """junit.xml of a document dict as tests build it (validated into the typed Document first)."""
    return reports.render_junit(validate(doc, "test document"))


def cases(xml: str) -> list[ET.Element]:
    return ET.fromstring(xml).findall("./testsuite/testcase")


def by_target(found: list[ET.Element]) -> dict[str, list[ET.Element]]:
    out: dict[str, list[ET.Element]] = {}
    for case in found:
        target = case.find("properties/property[@name='target']").get("value")
        assert case.get("classname") == "amnesia-audit/" + target.replace(".", "_")
        out.setdefault(target, []).append(case)
    return out


def test_one_case_per_target_and_gate_with_the_failures_marked(rendered):
    root = ET.parse(rendered["files"]["xml"]).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("6", "3", "0")
    found = by_target(root.findall("./testsuite/testcase"))
    assert {name: [c.get("name") for c in cs] for name, cs in found.items()} == {
        name: ["fails unless the verdict passes", "fails if mia_auc_gap > 0.1"]
        for name in ("class=3", "samples=forget-ids.txt", "random=0.01@0")}
    # CI interfaces split a classname at its dots: there are none.
    assert all("." not in c.get("classname") for c in root.findall("./testsuite/testcase"))
    assert all(c.find("failure") is None for c in found["class=3"])
    verdict, gate = (c.find("failure") for c in found["samples=forget-ids.txt"])
    assert verdict.get("message").startswith("fail: the unlearned model still shows the forget set")
    assert f"p = {rendered['doc']['targets'][1]['p_value']:.2g}" in verdict.get("message")
    assert gate.get("message") == "mia_auc_gap = 0.1815; fails if mia_auc_gap > 0.1: it does, so the gate fails"


def test_an_inconclusive_target_is_a_failure_that_gives_its_reason(rendered):
    doc = rendered["doc"]
    target = doc["targets"][2]
    assert target["verdict"] == "inconclusive" and doc["config"]["inconclusive"] == "fail"
    verdict_case, gate_case = by_target(cases(rendered["files"]["xml"].read_text()))["random=0.01@0"]
    failure = verdict_case.find("failure")
    assert failure is not None and verdict_case.find("error") is None
    message = failure.get("message")
    assert message.startswith("inconclusive, fails closed (choose --inconclusive pass to let it through)")
    assert target["verdict_reason"] in message and f"best p = {target['power_p_value']:.2g} > alpha = 0.05" in message
    assert failure.text == f"random=0.01@0: {message}"
    assert "verdict=inconclusive" in verdict_case.find("system-out").text
    assert gate_case.find("failure") is None  # its --fail-on gate passes: the verdict alone fails it


def test_an_inconclusive_target_let_through_by_the_policy_is_no_failure(tmp_path):
    doc = build_document(tmp_path, inconclusive="pass")
    verdict_case, _ = by_target(cases(render_junit(doc)))["random=0.01@0"]
    assert verdict_case.find("failure") is None and verdict_case.find("error") is None
    assert "verdict=inconclusive" in verdict_case.find("system-out").text
    root = ET.fromstring(render_junit(doc))
    assert root.get("failures") == "2"  # the samples target's two gates only


def test_failed_steps_are_errors_and_every_gate_is_a_case(results_doc):
    doc, _ = results_doc
    doc["config"]["gates"].append("mia_tpr_at_1pct_fpr>0.05")
    doc["targets"][0]["gates"].append({"expr": "mia_tpr_at_1pct_fpr>0.05", "value": 0.02, "passed": True,
                                       "message": "mia_tpr_at_1pct_fpr = 0.02; fails if mia_tpr_at_1pct_fpr > 0.05: "
                                                  "it does not, so the gate passes"})
    step_failed(doc["targets"][1], "attack lira_online failed: \x00 bad bytes")
    found = cases(render_junit(doc))
    assert len(found) == 3 + 2 + 2
    errors = [c for c in found if c.find("error") is not None]
    assert [c.get("classname") for c in errors] == ["amnesia-audit/samples=forget-ids_txt"] * 2
    assert all("attack lira_online failed: \\x00 bad bytes" == c.find("error").get("message") for c in errors)  # shown
    assert all(c.find("failure") is None for c in errors)  # an error, not also a failure


def test_targets_without_gates_still_appear(results_doc):
    doc, _ = results_doc
    for target in doc["targets"]:
        target["gates"] = []
    found = cases(render_junit(doc))
    assert [c.get("name") for c in found] == ["no gates"] * 3


def test_audit_gate_writes_junit_atomically(tmp_path):
    """`audit gate --junit FILE`: the re-gated outcome as JUnit, written under a temporary name and renamed."""
    from tests.cli_runner import run_audit
    from tests.reports.report_documents import write_results

    results = write_results(tmp_path / "audit-out")
    target = tmp_path / "ci" / "gate-junit.xml"
    target.parent.mkdir()
    target.write_text("an earlier artefact")
    gated = run_audit(["gate", results, "--junit", target, "--fail-on", "residual_leakage_upper>0.01"],
                      in_process=True)
    assert gated.returncode == 1, gated.stderr
    assert "class=3: verdict pass (strong evidence the data are gone);" in gated.stdout
    root = ET.parse(target).getroot()
    names = {c.get("name") for c in root.iter("testcase")}
    assert "fails if residual_leakage_upper > 0.01" in names and root.get("failures") == "6"
    assert sorted(p.name for p in target.parent.iterdir()) == ["gate-junit.xml"]  # no temporary left

    folder = run_audit(["gate", results, "--junit", tmp_path], in_process=True)
    assert folder.returncode == 2 and folder.stderr.count("\n") == 1 and "is a folder" in folder.stderr
    nowhere = run_audit(["gate", results, "--junit", tmp_path / "no" / "such.xml"], in_process=True)
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr and not (tmp_path / "no").exists()
