"""junit.xml: one test case per target and gate, so CI systems show each gate (issue 5)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from reports.document import Document, GateResult
from reports.fmt import bound, certainty, gate_rule, num
from reports.text import printable

def _x(text: object) -> str:
    """Text safe for XML 1.0 and for a CI log (control, direction, surrogate and non-characters
    from a document would make junit.xml ill-formed or hide what it says): escaped."""
    return printable(text)


def _time(seconds: float) -> str:
    """A duration as JUnit writes it: finite, never "inf" (a forged timing is shown as 0)."""
    return f"{seconds:.3f}" if math.isfinite(seconds) and 0 <= seconds < 1e12 else "0.000"


def classname(target_name: str) -> str:
    """The test case's classname: ``amnesia-audit/<target>`` with every dot made an underscore, since CI
    interfaces (Jenkins, GitLab, Azure) split a classname at its dots into package and class
    (``samples=forget-ids.txt`` would show as class ``txt``). The name in full is in the case's properties."""
    return f"amnesia-audit/{target_name.replace('.', '_')}"


def render_junit(doc: Document) -> str:
    """JUnit XML: a failed gate is a ``<failure>``, a failed step an ``<error>`` (fail closed).

    Every target's first test case is its verdict: an inconclusive target that the policy
    does not let through is a ``<failure>`` whose message gives the reason."""
    suite = ET.Element("testsuite", name="amnesia-audit")
    tests = failures = errors = 0
    total_time = 0.0
    for target in doc.targets:
        name = target.name
        seconds = sum(v for v in target.timings.values() if v is not None)
        total_time += seconds
        gates = target.gates or [GateResult(expr="no gates", passed=True, value=None, message="no gates were set")]
        for i, gate in enumerate(gates):
            # The name reads as the rule it is: "fails if residual_leakage_upper > 0.5", not a condition that held.
            case = ET.SubElement(suite, "testcase", classname=_x(classname(name)),
                                 name=_x(gate_rule(gate.expr) if target.gates else gate.expr),
                                 time=_time(seconds if i == 0 else 0.0))
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", name="target", value=_x(name))
            ET.SubElement(properties, "property", name="gate", value=_x(gate.expr))
            tests += 1
            if target.error is not None:
                errors += 1
                ET.SubElement(case, "error", message=_x(target.error), type="StepError").text = _x(
                    f"{name}: a step failed, so this gate was not evaluated: {target.error}")
            elif not gate.passed:
                failures += 1
                message = gate.message or f"{gate.expr} failed (value {gate.value})"
                ET.SubElement(case, "failure", message=_x(message), type="GateFailure").text = _x(f"{name}: {message}")
            if target.error is None:
                out = ET.SubElement(case, "system-out")
                value = ("\u2014" if gate.expr == "verdict" else "no finite value") if gate.value is None \
                    else f"{gate.value:.4g}"
                out.text = _x(f"target={name} verdict={target.verdict} how sure: {certainty(target)[1]}; "
                              f"p_value={target.p_value} power_p_value={target.power_p_value} "
                              f"residual_leakage={num(target.residual_leakage, 4)} "
                              f"residual_leakage_upper={bound(target.residual_leakage_upper, 4)} value={value}")
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("time", _time(total_time))
    if doc.created:
        suite.set("timestamp", _x(doc.created))
    root = ET.Element("testsuites", name="amnesia-audit", tests=str(tests), failures=str(failures),
                      errors=str(errors), time=_time(total_time))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
