"""report.html: self-contained, escaped, failures first, verdicts explained, images embedded or visibly missing."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from markupsafe import escape
from tests.reports.report_documents import build_document, finish, step_failed

import reports.html
from reports.reading import validate
from reports.images import embed


def render_html(doc: dict, folder: Path) -> str:
    """The page of a document dict as tests build it (validated into the typed Document first)."""
    return reports.html.render_html(validate(doc, "test document"), folder)


def positions(page: str, *needles: str) -> list[int]:
    found = [page.find(n) for n in needles]
    assert all(i >= 0 for i in found), [n for n, i in zip(needles, found) if i < 0]
    return found


def esc(text: str) -> str:
    """Document text as the templates escape it (autoescape: markupsafe)."""
    return str(escape(text))


def summary_of(page: str) -> str:
    return page[page.index('id="summary"'):page.index('class="target-section"')]


def section(page: str, name: str) -> str:
    """The target section of ``name`` (its heading names it in <code>)."""
    found = [s for s in re.findall(r'<section class="target-section".*?</section>', page, flags=re.S)
             if f"Forget request <code>{esc(name)}</code>" in s]
    assert len(found) == 1, f"{len(found)} sections for {name}"
    return found[0]


def words(html: str) -> str:
    """The text a reader sees: tags dropped, entities of the templates resolved, whitespace collapsed."""
    import html as html_lib

    cells = re.sub(r"</?(?:td|th|tr|p|li|br|h\d|div|caption|summary)\b[^>]*>", " ", html)  # blocks apart
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", cells)).split())


def cards(page: str) -> dict[str, str]:
    """Target name -> its summary card's markup."""
    found = re.findall(r'<article class="target-card \w+">.*?</article>', summary_of(page), flags=re.S)
    return {re.search(r'<a href="#[^"]+">([^<]+)</a>', c).group(1): c for c in found}


def card_states(page: str) -> list[tuple[str, str]]:
    """(badge, target name) of each summary card, in page order."""
    return re.findall(r'<article class="target-card \w+"><h4><span class="badge badge-(\w+)">\w+</span> '
                      r'<a href="#[^"]+">([^<]+)</a>', summary_of(page))


def test_the_targets_that_do_not_pass_come_first(rendered):
    doc = rendered["doc"]
    # In the file the passing target comes first, so the order below is the renderer's doing.
    assert [(t["name"], t["verdict"], t["passed"]) for t in doc["targets"]] == [
        ("class=3", "pass", True), ("samples=forget-ids.txt", "fail", False), ("random=0.01@0", "inconclusive", False)]
    page = rendered["files"]["html"].read_text()
    assert card_states(page) == [("fail", "samples=forget-ids.txt"), ("inconclusive", "random=0.01@0"),
                                 ("pass", "class=3")]
    sections = re.findall(r'<section class="target-section" id="([^"]+)"><h2><span class="badge badge-(\w+)">', page)
    assert [(i.split("-")[0], badge) for i, badge in sections] == [("t1", "fail"), ("t2", "inconclusive"),
                                                                   ("t0", "pass")]
    toc = page[page.index('<nav class="toc"'):page.index("</nav>")]
    positions(toc, "samples=forget-ids.txt", "random=0.01@0", "class=3")
    assert toc.index("samples=forget-ids.txt") < toc.index("random=0.01@0") < toc.index("class=3")


def test_a_failing_gate_comes_before_a_passing_one_within_a_target(results_doc):
    doc, folder = results_doc
    doc["targets"][1]["gates"].insert(0, {"expr": "residual_leakage_upper>0.9", "value": 0.86, "passed": True,
                                          "message": "residual_leakage_upper = 0.86; the gate "
                                                     "'residual_leakage_upper>0.9' passes"})
    page = render_html(doc, folder)
    table = page[page.index("Gates for samples=forget-ids.txt"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<td>([^<]+)<br><code>([^<]+)</code></td>", table)
    assert rows == [("fails unless the verdict passes", "verdict"), ("fails if mia_auc_gap &gt; 0.1", "mia_auc_gap&gt;0.1"),
                    ("fails if residual_leakage_upper &gt; 0.9", "residual_leakage_upper&gt;0.9")]


def test_summary_speaks_plainly(rendered):
    doc, page = rendered["doc"], rendered["files"]["html"].read_text()
    positions(page, "Audit failed", "2 of 3 forget requests did not pass", "Residual leakage", "retrained from scratch",
              "all 137 training examples of class 3", "50 individually listed training examples",
              "13 individually listed training examples", "amnesiac unlearning", "relabelling",
              *(esc(note) for note in doc["notes"]))


def test_each_request_says_what_was_asked_and_done_whether_it_worked_and_how_sure(rendered):
    page, (ok, bad, undecided) = rendered["files"]["html"].read_text(), rendered["doc"]["targets"]
    card = {name: words(html) for name, html in cards(page).items()}
    positions(card["class=3"], "Asked: forget all 137 training examples of class 3.",
              "Done: amnesiac unlearning (recorded updates subtracted, then repaired).",
              "Result: Worked: the attacks detected these data before unlearning and not after",
              "How sure: strong evidence the data are gone",
              f"Residual leakage {ok['residual_leakage']:.2f} (at most {ok['residual_leakage_upper']:.2f}; fails if above 0.50)")
    positions(card["samples=forget-ids.txt"], "Done: relabelling", "How sure: strong evidence the data are still there",
              "Result: Did not work: the unlearned model still shows these data to the attacks.")
    positions(card["random=0.01@0"], "How sure: no evidence either way",
              "Result: Undecided (inconclusive): the attacks could not detect these data even in the original model",
              "Not evidence of erasure; fails the audit by its policy (--inconclusive fail).", f"before unlearning p = {undecided['power_p_value']:.2g}")
    passing, failing = words(section(page, "class=3")), words(section(page, "samples=forget-ids.txt"))
    positions(passing, f"Why: {ok['verdict_reason']}.",
              "Power check: before unlearning the attacks told the forget set from unseen data at "
              f"p = {ok['power_p_value']:.2g} (significance level 0.05, Holm-corrected over 3 test(s)). After "
              f"unlearning: p = {ok['p_value']:.2g}.",
              f"Residual leakage: {ok['residual_leakage']:.2f} (95% interval "
              f"{ok['residual_leakage_ci95'][0]:.2f} to {ok['residual_leakage_ci95'][1]:.2f}")
    positions(failing, "at alpha = 0.05 after Holm's correction", f"Residual leakage: {bad['residual_leakage']:.2f}")
    # A residual above 1 is explained where it is shown.
    assert bad["residual_leakage"] > 1 and "A residual leakage above 1 means" in failing
    assert "A residual leakage above 1 means" not in passing


def test_nothing_is_said_twice(rendered):
    """The card says the outcome, the section the evidence: no verdict reason, advice or card repeated."""
    page, doc = rendered["files"]["html"].read_text(), rendered["doc"]
    for target in doc["targets"]:
        assert page.count(esc(target["verdict_reason"])) == 1, target["name"]
        card_text = words(cards(page)[target["name"]])
        result = card_text[card_text.index("Result:"):card_text.index("Result:") + 80]
        assert result not in words(section(page, target["name"])), target["name"]
    assert page.count(esc(doc["targets"][2]["advice"])) == 1


def test_every_term_links_to_its_glossary_entry_with_its_meaning_as_title(rendered):
    from reports.glossary import TERMS

    page = rendered["files"]["html"].read_text()
    links = re.findall(r'<a class="term" href="#g-([\w-]+)" title="([^"]*)">', page)
    assert {key for key, _ in links} >= {"power-check", "holm", "alpha", "residual-leakage", "upper-bound",
                                         "over-forgetting", "inconclusive", "u-lira", "p-value", "how-sure"}
    assert all(str(escape(TERMS[key][1])) == title for key, title in links)
    glossary = page[page.index('<section id="glossary">'):]
    assert all(f'<dt id="g-{key}">' in glossary for key in TERMS)
    # The first use of each jargon term in the page comes with its explanation.
    for term in ("Power check", "Holm", "Over-forgetting", "U-LiRA", "significance level"):
        first = page.index(term)
        assert page.rfind('<a class="term"', 0, first) > page.rfind("</a>", 0, first), term


def test_an_inconclusive_target_is_badged_and_explained_with_its_advice(rendered):
    doc, page = rendered["doc"], rendered["files"]["html"].read_text()
    target = doc["targets"][2]
    assert target["verdict"] == "inconclusive" and target["advice"]
    text = section(page, "random=0.01@0")
    assert '<h2><span class="badge badge-inconclusive">INCONCLUSIVE</span> Forget request' in text
    positions(words(text), f"Why: {target['verdict_reason']}.",
              "Power check: before unlearning the attacks could not tell the forget set from unseen "
              f"data at p = {target['power_p_value']:.2g}",
              "fails unless the verdict passes verdict \u2014 inconclusive, fails closed (choose --inconclusive pass to "
              "let it through) (why: above)")
    assert "Residual leakage:" not in words(text)  # nothing was powered, so there is no headline number to show
    card = cards(page)["random=0.01@0"]
    assert card.startswith('<article class="target-card inconclusive">')
    positions(card, '<span class="badge badge-inconclusive">INCONCLUSIVE</span>',
              f'<details class="advice"><summary>What would decide it</summary>{esc(target["advice"])}</details>')
    # Only the inconclusive target carries the badge; none of it is red.
    assert page.count('class="badge badge-inconclusive"') == 2  # its summary card and its section
    assert "verdict-fail" not in card and "badge-fail" not in card


def test_the_evidence_table_lists_every_test_with_holm_p_values(rendered):
    doc, page = rendered["doc"], rendered["files"]["html"].read_text()
    text = section(page, "class=3")
    table = text[text.index("<caption>Tests of the forget set</caption>"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr><td>(.*?)</td>", table)
    assert rows == [esc(t["label"]) for t in doc["targets"][0]["tests"]]
    # class accuracy: 136 of 137 correct before (effect 0.99), none after, none for any retrained model.
    assert ('<td class="n">0.99</td><td class="n">1e-288</td><td class="n">0.00</td><td class="n">1</td>'
            '<td class="n">0.00 to 0.00</td>') in table
    assert "Tests of the forget set" in section(page, "samples=forget-ids.txt")


def test_the_per_example_figure_is_an_inline_svg_in_each_target_section(rendered):
    page = rendered["files"]["html"].read_text()
    for name, n, held in (("class=3", 137, 45), ("samples=forget-ids.txt", 50, 449), ("random=0.01@0", 13, 449)):
        text = section(page, name)
        evidence = text[text.index("<h3>Evidence behind the verdict</h3>"):text.index("<h3>Forget quality</h3>")]
        figures = re.findall(r'<figure class="wide">(<svg .*?</svg>)\s*<figcaption>(.*?)</figcaption></figure>',
                             evidence, flags=re.S)
        assert len(figures) == 1, name
        svg, caption = figures[0]
        assert 'role="img"' in svg and 'viewBox="' in svg and "Forget examples under each model" in svg
        assert caption.startswith("The per-example membership statistic of the forget examples")
        # The legend counts this target's own examples (three retrained models each).
        for label in (f"original (n={n})", f"unlearned (n={n})", f"retrained (n={3 * n})",
                      f"held-out, original (n={held})"):
            assert label in svg, (name, label)


def test_a_target_without_per_example_statistics_has_no_figure(results_doc):
    doc, folder = results_doc
    doc["targets"][1]["per_example"] = None
    page = render_html(doc, folder)
    evidence = section(page, "samples=forget-ids.txt").split("<h3>Evidence behind the verdict</h3>")[1]
    assert "<svg" not in evidence.split("<h3>Forget quality</h3>")[0]
    assert "The most exposed forget examples" not in evidence
    assert "Forget examples under each model" in section(page, "class=3")


def test_the_page_is_self_contained(rendered):
    page = rendered["files"]["html"].read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page), "only data: URIs and in-page anchors"
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    # a ROC figure per attack per target, a per-example figure per target, a residual figure per powered target
    assert page.count("<svg") == 3 * 2 + 3 + 2
    assert page.count('src="data:image/png;base64,') == 12 + 4  # reconstructions of 3 models, 4 real examples
    assert '<meta name="viewport"' in page and "@media print" in page


def test_every_in_page_reference_has_exactly_one_target(rendered):
    """Nine inline SVGs share the page: their clip paths and the contents' anchors must not collide."""
    page = rendered["files"]["html"].read_text()
    ids = Counter(re.findall(r'\sid="([^"]+)"', page))
    refs = set(re.findall(r'url\(#([^)]+)\)', page)) | set(re.findall(r'href="#([^"]+)"', page))
    assert len(refs) > 9
    assert {r: ids[r] for r in refs if ids[r] != 1} == {}


def test_document_text_is_escaped(results_doc):
    doc, folder = results_doc
    doc["targets"][1]["name"] = "<script>alert(1)</script>"
    doc["notes"].append('"><img src=x onerror=alert(2)>')
    doc["targets"][0]["membership"][0]["label"] = "LiRA <b>$x$</b>"
    doc["targets"][0]["tests"][0]["label"] = "<i>membership</i>"
    doc["targets"][2]["advice"] = "<u>forget more</u>"
    doc["targets"][2]["verdict_reason"] = "<em>no power</em>"
    page = render_html(doc, folder)
    for raw in ("<script>alert", "<img src=x", "<b>$x$", "<i>membership", "<u>forget", "<em>no power"):
        assert raw not in page, raw
    positions(page, "&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;i&gt;membership&lt;/i&gt;",
              "&lt;u&gt;forget more&lt;/u&gt;", "&lt;em&gt;no power&lt;/em&gt;")


def test_missing_images_get_a_visible_note(results_doc):
    doc, folder = results_doc
    images = doc["targets"][0]["inversion"]["unlearned"]["images"]
    (folder / images[0]).unlink()
    images.append("../../etc/passwd")
    page = render_html(doc, folder)
    assert page.count('class="missing-image"') == 2
    assert "image missing: unlearned-class3-0.png" in page
    assert "image outside the results folder, not embedded: passwd" in page


def test_embed_refuses_non_images(tmp_path: Path):
    (tmp_path / "notes.png").write_text("not a png")
    assert embed("notes.png", tmp_path).problem == "not a PNG or JPEG image"


def test_a_run_without_retrained_models_renders(results_doc):
    """--reference none: no retrained models, so no class tests and no retrained column anywhere."""
    doc, folder = results_doc
    doc["config"].update(reference="none", retrains=0)
    for target in doc["targets"]:
        target["accuracy"]["reference"] = None
        target["retrains"] = []
        target["per_example"]["retrained"] = []
        for attack in target["membership"]:
            attack["reference"] = None
        if target["inversion"]:
            target["inversion"].update(reference=None, retrains=[])
        tests = [t for t in target["tests"] if t["name"] == "membership"]
        tests[0]["effect_retrained"] = []
        tests[0]["detail"]["null"] = tests[0]["inputs"]["null"] = "permutation"  # as --reference none records it
        finish(target, tests)
    page = render_html(doc, folder)
    positions(page, "No model that never saw the data was used", "no retrained reference was made to compare with",
              "Model inversion was not run")
    assert "(the retrained reference:" not in page and "<td>retrained</td>" not in page
    assert "retrained (n=" not in page and "Holm-corrected over 3 test(s)" not in page
    # The evidence table says so rather than inventing a spread.
    membership = doc["targets"][0]["tests"][0]
    assert (f'<td class="n">{membership["effect_unlearned"]:.2f}</td><td class="n">{membership["p_unlearned_holm"]:.2g}'
            '</td><td class="n">\u2014</td>') in section(page, "class=3")


def test_a_failed_step_renders_as_error(results_doc):
    doc, folder = results_doc
    doc["verdict"], doc["exit_code"] = "error", 3
    step_failed(doc["targets"][0], "attack lira_online failed: reference model diverged")
    page = render_html(doc, folder)
    summary = summary_of(page)
    error, failing = positions(summary, "attack lira_online failed: reference model diverged", "samples=forget-ids.txt")
    assert error < failing and "Audit incomplete: a step failed" in summary
    assert card_states(page)[0] == ("error", "class=3")
    text = section(page, "class=3")
    positions(words(text), "How sure: not assessed: a step failed", "No verdict was reached because a step failed.",
              "No test ran for this request.")
    assert "Power check" not in text and "<svg" not in text


def test_an_inconclusive_target_let_through_by_the_policy_is_not_counted_as_failing(tmp_path):
    doc = build_document(tmp_path, inconclusive="pass")
    del doc["targets"][1]  # leave the passing and the inconclusive target
    doc["verdict"], doc["exit_code"] = "pass", 0
    assert all(t["passed"] for t in doc["targets"])
    summary = summary_of(render_html(doc, tmp_path))
    assert "Audit passed" in summary and "did not pass" not in summary


def test_the_templates_are_package_data_read_through_the_package(tmp_path, monkeypatch):
    """The page comes from reports/templates/ as shipped in the package (pyproject's package-data), not from the cwd."""
    import tomllib
    from fnmatch import fnmatch
    from importlib import resources

    from jinja2 import PackageLoader

    env = reports.html.environment()
    assert isinstance(env.loader, PackageLoader) and env.loader.package_name == "reports"
    shipped = resources.files("reports").joinpath("templates")
    names = sorted(p.name for p in shipped.iterdir() if p.is_file())
    assert "report.html" in names and sorted(env.list_templates()) == names
    root = Path(reports.__file__).resolve().parent.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["reports"]
    assert all(any(fnmatch(f"templates/{name}", pattern) for pattern in patterns) for name in names)
    monkeypatch.chdir(tmp_path)  # nothing is looked up relative to the working directory
    assert render_html(build_document(tmp_path), tmp_path).startswith("<!DOCTYPE html>")


def test_autoescape_is_on_for_every_template(results_doc):
    doc, folder = results_doc
    env = reports.html.environment()
    assert env.autoescape is True  # for every template, whatever its name
    doc["targets"][0]["name"] = "class=3&<b>"
    doc["targets"][0]["gates"][0]["message"] = "pass & <i>done</i>"
    doc["provenance"]["data"]["class_names"][3] = "th<r>ee"
    page = render_html(doc, folder)
    assert "class=3&<b>" not in page and "<i>done" not in page and "th<r>ee" not in page
    # The name is escaped in the title, the header, its card, the contents, its gate table, its section heading and
    # the provenance's table of requests.
    assert page.count("class=3&amp;&lt;b&gt;") == 7
    positions(page, "pass &amp; &lt;i&gt;done&lt;/i&gt;", "(&ldquo;th&lt;r&gt;ee&rdquo;)")


def test_render_html_takes_the_typed_document(results_doc):
    doc, folder = results_doc
    with pytest.raises(TypeError, match="takes a reports.document.Document, not dict"):
        reports.html.render_html(doc, folder)


def test_the_reference_models_sentence_follows_needs_reference_and_older_documents_fall_back_to_names(results_doc):
    doc, folder = results_doc
    sentence = "The membership attacks that need them trained 16 reference (shadow) models"
    assert sentence in render_html(doc, folder)  # written before the field: lira_online is known to need them
    for target in doc["targets"]:
        for attack in target["membership"]:
            attack["needs_reference"] = False
    assert sentence not in render_html(doc, folder)  # the field, when present, decides
    doc["targets"][0]["membership"][1]["needs_reference"] = True  # an attack the old list did not name
    doc["targets"][0]["membership"][1]["attack"] = "some_future_attack"
    assert sentence in render_html(doc, folder)


def test_an_audit_of_a_model_given_says_no_unlearning_step_ran(results_doc):
    """--original: the method is "given"; neither the card nor the summary claims the model was unlearned here."""
    doc, folder = results_doc
    for target in doc["targets"]:
        target["method"] = {"name": "given", "reason": "unlearned elsewhere: unlearned.pt, audited against the "
                            "original model.pt; no unlearning step ran", "seconds": None, "details": {}}
    page = render_html(doc, folder)
    summary = words(summary_of(page))
    assert "The model was audited as given: it was unlearned elsewhere (--original), and no unlearning step ran" \
        in summary
    assert "the model was unlearned" not in summary and "Chosen because" not in page
    assert words(cards(page)["class=3"]).count("Done: none here: audited as given, unlearned elsewhere (--original).")
    assert '<a class="term" href="#g-given"' in page
    positions(words(section(page, "class=3")), "Unlearned elsewhere: unlearned.pt, audited against the original")
    doc["provenance"]["original"] = {"path": "model.pt", "sha256": "5e" * 32}
    provenance = words(render_html(doc, folder).split('<section id="provenance">')[1])
    positions(provenance, "Original model file model.pt", f"Original model SHA-256 {'5e' * 32}")


def test_cached_retrained_models_are_labelled_cached(results_doc):
    doc, folder = results_doc
    for retrain in doc["targets"][0]["retrains"]:
        retrain["from_cache"] = True  # all three of class=3 from the cache; samples= has 2 of 3 (the fixture's)
    page = render_html(doc, folder)
    positions(words(section(page, "class=3")), "Time to load the retrained models 12.6 s (cached: all 3 came from the "
              "reference-model cache; retraining them takes longer)")
    positions(words(section(page, "samples=forget-ids.txt")), "Time to retrain the reference models 12.1 s (2 of 3 cached)")
    doc["targets"][0]["retrains"] = [dict(r, from_cache=False) for r in doc["targets"][0]["retrains"]]
    assert "cached" not in words(section(render_html(doc, folder), "class=3")).split("Time to retrain")[1][:40]


def test_the_most_exposed_forget_examples_are_named_by_training_id(rendered):
    doc, page = rendered["doc"], rendered["files"]["html"].read_text()
    picture = doc["targets"][1]["per_example"]
    n = len(picture["forget_ids"])
    excess = {i: picture["unlearned"][k] - sum(picture["retrained"][m * n + k] for m in range(3)) / 3
              for k, i in enumerate(picture["forget_ids"])}
    top = sorted(excess, key=lambda i: -excess[i])[:5]
    table = section(page, "samples=forget-ids.txt")
    table = table[table.index("The most exposed forget examples"):]
    table = table[:table.index("</table>")]
    assert [int(i) for i in re.findall(r"<tr><td>(\d+)</td>", table)] == top
    assert f'<td class="n">{excess[top[0]]:.2f}</td></tr>' in table


def test_when_no_forget_example_stands_out_the_report_says_so_instead_of_a_table(results_doc):
    doc, folder = results_doc
    picture = doc["targets"][0]["per_example"]
    n = len(picture["forget_ids"])
    picture["retrained"] = picture["unlearned"] * 3  # every model that never saw them agrees with the unlearned one
    text = words(section(render_html(doc, folder), "class=3"))
    assert "No forget example stands out" in text and "The most exposed forget examples" not in text
    assert len(picture["retrained"]) == 3 * n


def test_a_document_written_before_the_digests_and_ids_still_loads_and_says_so(results_doc):
    doc, folder = results_doc
    for target in doc["targets"]:
        for key in ("ids_sha256", "file_sha256"):
            del target["forget"][key]
        del target["per_example"]["forget_ids"]
    page = render_html(doc, folder)
    assert "The most exposed forget examples" not in page
    assert page.count("The training ids of the tested examples are not recorded in this document") == 3
    provenance = words(page[page.index('<section id="provenance">'):])
    positions(provenance, "class=3 137 \u2014 \u2014", "written before digests were recorded")


def test_the_request_digests_are_shown_under_the_request_and_in_provenance(rendered):
    doc, page = rendered["doc"], rendered["files"]["html"].read_text()
    for target in doc["targets"]:
        digest = target["forget"]["ids_sha256"]
        assert len(digest) == 64 and page.count(digest) == 2, target["name"]
    file_digest = doc["targets"][1]["forget"]["file_sha256"]
    assert file_digest in section(page, "samples=forget-ids.txt") and page.count(file_digest) == 2


def test_a_not_memorised_request_has_its_own_badge_colour_and_words(results_doc):
    doc, folder = results_doc
    target = doc["targets"][2]
    target.update(verdict="not_memorised", memorised_auc=0.52, memorised_auc_ci95=[0.41, 0.58],
                  memorised_auc_upper=0.57, advice=None, passed=True,
                  verdict_reason="even before unlearning no test told the forget set from unseen data")
    page = render_html(doc, folder)
    card = cards(page)["random=0.01@0"]
    assert card.startswith('<article class="target-card not_memorised">')
    assert '<span class="badge badge-not_memorised">NOT MEMORISED</span>' in card
    positions(words(card), "How sure: evidence there was nothing to remove", "Result: Nothing detectable to remove",
              "passes this audit by its policy (--not-memorised pass, the default)", "membership AUC of the original 0.52 "
              "(at most 0.57)")


def test_an_unbounded_residual_is_written_unbounded_and_drawn_with_an_open_end(results_doc):
    from reports.figures import residual_svg
    from reports.reading import validate as to_document

    doc, folder = results_doc
    doc["targets"][0].update(residual_leakage_ci95=[0.0, None], residual_leakage_upper=None)
    typed = to_document(doc, "test document")
    card = words(cards(reports.html.render_html(typed, folder))["class=3"])
    assert "(at most unbounded; fails if above 0.50)" in card and "inf" not in card.split()
    open_end, closed = residual_svg(typed.targets[0], "a"), residual_svg(typed.targets[1], "b")
    assert open_end.count("<path") > closed.count("<path")  # the arrow at the open end


def test_a_request_that_fails_a_gate_says_which_whatever_its_verdict(results_doc):
    """An undecided request that also fails a --fail-on gate is a failure, not merely undecided."""
    doc, folder = results_doc
    gate = doc["targets"][2]["gates"][1]
    gate.update(passed=False, value=0.3, message="mia_auc_gap = 0.3; fails if mia_auc_gap > 0.1: it does, so the "
                "gate fails")
    page = render_html(doc, folder)
    assert card_states(page)[:2] == [("fail", "samples=forget-ids.txt"), ("fail", "random=0.01@0")]
    positions(words(cards(page)["random=0.01@0"]), "How sure: no evidence either way", "Result: Fails this audit: a "
              "gate set for it failed (fails unless the verdict passes; fails if mia_auc_gap > 0.1); the verdict on "
              "the data alone is inconclusive.")
    assert "Audit failed" in summary_of(page)


def test_a_long_report_draws_the_figures_of_its_first_requests_only(results_doc, monkeypatch):
    """300 requests took minutes to render (a few matplotlib figures each): beyond the first
    MAX_FIGURE_TARGETS in the report's order, a request keeps its numbers and says its figures are left out."""
    import copy

    doc, folder = results_doc
    full = render_html(doc, folder)
    monkeypatch.setattr(reports.html, "MAX_FIGURE_TARGETS", 1)
    page = render_html(copy.deepcopy(doc), folder)
    with_svg = [t["name"] for t in doc["targets"] if "<svg" in section(page, t["name"])]
    without = [t["name"] for t in doc["targets"] if "<svg" not in section(page, t["name"])]
    assert len(with_svg) == 1 and without, (with_svg, without)
    assert all("this request's figures are left out" in section(page, name) for name in without)
    assert "this request's figures are left out" not in section(page, with_svg[0])
    assert all("<svg" in section(full, t["name"]) for t in doc["targets"] if t["name"] in without)  # drawn otherwise


def test_the_inversions_stand_beside_real_test_examples_of_the_class(rendered):
    """Issue 25, item 2: the real examples come first in the inversion grid, embedded from the PNGs
    results.json names, and the report says where they come from (the held-out test split)."""
    page = rendered["files"]["html"].read_text()
    examples = rendered["doc"]["targets"][0]["inversion"]["real_examples"]
    assert len(examples) == 4 and {e["label"] for e in examples} == {3}
    grid = section(page, "class=3")
    grid = grid[grid.index('<div class="inv-grid">'):]
    boxes = re.findall(r'<div class="inv-role[^"]*"><h4>([^<]+)</h4>', grid)
    assert boxes == ["Real examples of class 3", "Original model", "Unlearned model", "Retrained reference"]
    real = grid[:grid.index('<div class="inv-role"><h4>')]
    for example in examples:
        assert embed(example["image"], rendered["folder"]).data_uri in real
        assert f'alt="real example of class 3: test example {example["index"]}"' in real
    indexes = ", ".join(str(e["index"]) for e in examples)
    assert f"held-out test data, which the audited model never trained on: test examples {indexes}" in words(real)
    assert "not the training examples the request asked to forget" in words(grid)


def test_a_document_without_real_examples_says_none_are_recorded(results_doc, monkeypatch):
    doc, folder = results_doc
    monkeypatch.setattr(reports.html, "MAX_FIGURE_TARGETS", 0)  # words only: no figure is drawn (make test's time)
    del doc["targets"][0]["inversion"]["real_examples"]  # written before they were recorded
    page = render_html(doc, folder)
    grid = section(page, "class=3")
    assert '<div class="inv-grid">' in grid and "inv-real" not in grid
    assert "records no real example of the class" in words(grid)
    doc["targets"][0]["inversion"]["real_examples"] = [{"label": 3, "split": "test", "index": 5,
                                                        "image": "inversion/class_3/gone.png"}]
    assert "image missing: gone.png" in words(section(render_html(doc, folder), "class=3"))


def test_the_reference_is_said_from_what_each_request_was_judged_against(results_doc, monkeypatch):
    """The default --reference auto retrains for a class and uses the shared pool for individual examples:
    the Method section says both, for which requests, and never "no reference" when one was used."""
    doc, folder = results_doc
    monkeypatch.setattr(reports.html, "MAX_FIGURE_TARGETS", 0)  # words only: no figure is drawn (make test's time)
    doc["config"]["reference"] = "auto"
    doc["provenance"]["reference_models"] = {"num_models": 16}
    for target in doc["targets"][1:]:  # the two requests of individual examples
        membership = next(t for t in target["tests"] if t["name"] == "membership")
        membership["detail"]["null"] = membership["inputs"]["null"] = "pool"
    method = words(render_html(doc, folder).split('id="method"')[1].split("How the verdict is reached")[0])
    assert "The yardstick (for class=3) is a set of models retrained from scratch without the data to forget" in method
    assert ("The yardstick (for samples=forget-ids.txt, random=0.01@0) is the shared pool of reference models "
            "(16 of them)") in method
    assert "No model that never saw the data was used" not in method
    only_class = dict(doc, targets=doc["targets"][:1])
    method = words(render_html(only_class, folder).split('id="method"')[1].split("How the verdict is reached")[0])
    assert "The yardstick is a set of models retrained" in method and "shared pool" not in method
    doc["provenance"]["reference_models"] = {"seeds": [1, 2]}  # a document that does not say the pool's size
    method = words(render_html(doc, folder).split('id="method"')[1].split("How the verdict is reached")[0])
    assert "is the shared pool of reference models, trained once" in method
