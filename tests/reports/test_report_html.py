"""report.html: self-contained, escaped, failures first, images embedded or visibly missing."""

from __future__ import annotations

import re
from pathlib import Path

from reports import render_html
from reports.images import embed


def positions(page: str, *needles: str) -> list[int]:
    found = [page.find(n) for n in needles]
    assert all(i >= 0 for i in found), [n for n, i in zip(needles, found) if i < 0]
    return found


def test_the_failing_target_and_gate_come_first(rendered):
    doc = rendered["doc"]
    assert doc["targets"][0]["passed"] and not doc["targets"][1]["passed"]  # failing one is second in the file
    page = rendered["files"]["html"].read_text()
    summary = page[page.index('id="summary"'):page.index('class="target-section"')]
    failing, passing = positions(summary, "samples=forget-ids.txt", "class=3")
    assert failing < passing
    assert summary.find("badge-fail") < summary.find("badge-pass")
    sections = re.findall(r'<section class="target-section" id="([^"]+)"', page)
    assert sections[0].startswith("t1-") and sections[1].startswith("t0-")


def test_a_failing_gate_comes_before_a_passing_one_within_a_target(results_doc):
    doc, folder = results_doc
    doc["targets"][1]["gates"].insert(0, {"expr": "mia_auc>0.9", "value": 0.74, "passed": True,
                                          "message": "mia_auc = 0.74, gate fails above 0.9"})
    page = render_html(doc, folder)
    table = page[page.index("Gates for samples=forget-ids.txt"):]
    assert table.index("residual_leakage&gt;0.1") < table.index("mia_auc&gt;0.9")


def test_summary_speaks_plainly(rendered):
    doc, page = rendered["doc"], rendered["files"]["html"].read_text()
    positions(page, "Verdict: FAIL", "1 of 2 forget requests did not pass", "Residual leakage", "retrained from scratch",
              "all 137 training examples of class 3", "50 individually listed training examples",
              "amnesiac unlearning", "relabelling", doc["notes"][0])


def test_the_page_is_self_contained(rendered):
    page = rendered["files"]["html"].read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page), "only data: URIs and in-page anchors"
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    assert page.count("<svg") == 4  # one ROC figure per attack per target
    assert page.count('src="data:image/png;base64,') == 12
    assert '<meta name="viewport"' in page and "@media print" in page


def test_document_text_is_escaped(results_doc):
    doc, folder = results_doc
    doc["targets"][1]["name"] = "<script>alert(1)</script>"
    doc["notes"].append('"><img src=x onerror=alert(2)>')
    doc["targets"][0]["membership"][0]["label"] = "LiRA <b>$x$</b>"
    page = render_html(doc, folder)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>$x$" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_missing_images_get_a_visible_note(results_doc):
    doc, folder = results_doc
    images = doc["targets"][0]["inversion"]["unlearned"]["images"]
    (folder / images[0]).unlink()
    images.append("../../etc/passwd")
    page = render_html(doc, folder)
    assert page.count('class="missing-image"') == 2
    assert "image missing: unlearned-0.png" in page
    assert "image outside the results folder, not embedded: passwd" in page


def test_embed_refuses_non_images(tmp_path: Path):
    (tmp_path / "notes.png").write_text("not a png")
    assert embed("notes.png", tmp_path).problem == "not a PNG or JPEG image"


def test_a_run_without_reference_or_inversion_renders(results_doc):
    doc, folder = results_doc
    doc["config"]["reference"] = "none"
    for target in doc["targets"]:
        target["inversion"] = None
        target["residual_leakage_basis"] = "absolute"
        target["accuracy"]["reference"] = None
        for attack in target["membership"]:
            attack["reference"] = None
    page = render_html(doc, folder)
    positions(page, "No retrained reference was used", "indistinguishable from chance", "Model inversion was not run")
    assert "(the retrained reference:" not in page and "<td>retrained</td>" not in page


def test_a_failed_step_renders_as_error(results_doc):
    doc, folder = results_doc
    doc["verdict"], doc["exit_code"] = "error", 3
    doc["targets"][0].update(method=None, accuracy={}, timings={}, membership=[], inversion=None, residual_leakage=None,
                             residual_leakage_basis=None, residual_components={}, passed=False,
                             error="attack lira failed: reference model diverged",
                             gates=[{"expr": "residual_leakage>0.1", "value": None, "passed": False,
                                     "message": "not evaluated: a step of this target failed"}])
    page = render_html(doc, folder)
    summary = page[page.index('id="summary"'):page.index('class="target-section"')]
    error, failing = positions(summary, "attack lira failed: reference model diverged", "samples=forget-ids.txt")
    assert error < failing and "Verdict: ERROR" in summary and "not measured" in summary
