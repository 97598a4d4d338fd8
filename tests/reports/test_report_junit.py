"""junit.xml: one test case per target and gate; failed gates are failures, failed steps errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from reports import render_junit


def cases(xml: str) -> list[ET.Element]:
    return ET.fromstring(xml).findall("./testsuite/testcase")


def test_one_case_per_target_and_gate_with_the_failure_marked(rendered):
    root = ET.parse(rendered["files"]["xml"]).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    by_target = {c.get("classname"): c for c in root.iter("testcase")}
    assert set(by_target) == {"amnesia-audit.class=3", "amnesia-audit.samples=forget-ids.txt"}
    failure = by_target["amnesia-audit.samples=forget-ids.txt"].find("failure")
    assert failure is not None and "0.37" in failure.get("message")
    assert by_target["amnesia-audit.class=3"].find("failure") is None


def test_failed_steps_are_errors_and_every_gate_is_a_case(results_doc):
    doc, _ = results_doc
    doc["config"]["gates"].append("mia_tpr_at_1pct_fpr>0.05")
    doc["targets"][0]["gates"].append({"expr": "mia_tpr_at_1pct_fpr>0.05", "value": 0.02, "passed": True,
                                       "message": "ok"})
    doc["targets"][1].update(error="attack lira failed: \x00 bad bytes", passed=False, residual_leakage=None,
                             gates=[{"expr": "residual_leakage>0.1", "value": None, "passed": False,
                                     "message": "not evaluated: a step of this target failed"}])
    found = cases(render_junit(doc))
    assert len(found) == 3
    errors = [c for c in found if c.find("error") is not None]
    assert len(errors) == 1 and "attack lira failed" in errors[0].find("error").get("message")


def test_targets_without_gates_still_appear(results_doc):
    doc, _ = results_doc
    for target in doc["targets"]:
        target["gates"] = []
    found = cases(render_junit(doc))
    assert [c.get("name") for c in found] == ["no gates", "no gates"]
