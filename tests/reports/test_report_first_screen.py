"""The goal of issue 25: from the first screen of report.html (1280x800, Chromium) a reader who knows no
statistics can tell, for each request, whether it passed, failed or is undecided, and how sure the audit
is: read from the rendered page's text, computed colours and pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from chromium_probe import CHROMIUM, Chromium
from tests.reports.first_screen import HEIGHT, WIDTH, first_screen, render_page, single_request

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed; .ci/run installs it")]

# The outcome colours of report.css (--pass, --fail, --undecided), as the browser computes them.
GREEN, RED, AMBER = (30, 123, 52), (180, 35, 24), (154, 103, 0)

PROBE = """(() => {
  const rgb = c => c.match(/\\d+/g).slice(0, 3).map(Number);
  const seen = el => { const r = el.getBoundingClientRect(); return r.bottom > 0 && r.bottom <= window.innerHeight; };
  const banner = document.querySelector('#summary .verdict');
  return {
    banner: {text: banner.innerText, border: rgb(getComputedStyle(banner).borderLeftColor), seen: seen(banner)},
    cards: Array.from(document.querySelectorAll('article.target-card')).map(card => {
      const badge = card.querySelector('.badge'), sure = card.querySelector('.sure'), result = card.querySelector('.outcome');
      return {name: card.querySelector('h4 a').innerText, badge: badge.innerText,
              badgeColour: rgb(getComputedStyle(badge).backgroundColor), sure: sure.innerText,
              sureColour: rgb(getComputedStyle(sure).color), result: result.innerText,
              seen: seen(badge) && seen(sure) && seen(result)};
    })};
})()"""


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    """Each single-request report and the full three-request one, visited once: (probed, first screen pixels)."""
    from tests.reports.report_documents import build_document

    folder = tmp_path_factory.mktemp("first-screen")
    doc = build_document(folder)  # once: the single-request documents are cut from it
    out = {}
    with Chromium() as chromium:
        for which in ("demo", "inconclusive", "failed", "all"):
            page = render_page(doc if which == "all" else single_request(doc, which), folder, which)
            visit = chromium.visit(page, WIDTH, HEIGHT, probe=PROBE)
            assert visit.failed_loads == [] and visit.console_errors == []
            out[which] = (visit.probed, np.asarray(first_screen(visit.screenshot)).reshape(-1, 3))
    return out


def near(pixels: np.ndarray, colour: tuple[int, int, int], within: int = 12) -> int:
    """How many pixels of the screen are within ``within`` of ``colour`` on every channel."""
    return int((np.abs(pixels.astype(int) - colour).max(axis=1) <= within).sum())


@pytest.mark.parametrize("which, badge, colour, sure, result", [
    ("demo", "PASS", GREEN, "strong evidence the data are gone", "Worked"),
    ("inconclusive", "INCONCLUSIVE", AMBER, "no evidence either way", "Undecided"),
    ("failed", "FAIL", RED, "strong evidence the data are still there", "Did not work"),
])
def test_the_first_screen_says_the_outcome_and_how_sure_in_words_and_colour(screens, which, badge, colour, sure, result):
    probed, pixels = screens[which]
    [card] = probed["cards"]
    assert card["seen"], "the badge, the certainty and the result are on the first screen"
    assert card["badge"] == badge and card["badgeColour"] == list(colour)
    assert card["sure"] == f"How sure: {sure}" and card["sureColour"] == list(colour)
    assert card["result"].startswith(f"Result: {result}")
    assert probed["banner"]["seen"] and probed["banner"]["border"] == list(colour)
    assert near(pixels, colour) > 500, "the outcome's colour is visible on the screen"


def test_an_undecided_request_is_not_shown_as_a_red_failure(screens):
    probed, pixels = screens["inconclusive"]
    assert probed["banner"]["text"].startswith("Undecided: the audit fails by its policy")
    assert "fails the audit unless --inconclusive pass is chosen" in probed["banner"]["text"]
    assert near(pixels, RED, within=30) == 0, "no red on the first screen of an undecided request"


def test_every_request_of_a_mixed_audit_is_readable_on_the_first_screen(screens):
    probed, pixels = screens["all"]
    assert [(c["name"], c["badge"], c["seen"]) for c in probed["cards"]] == [
        ("samples=forget-ids.txt", "FAIL", True), ("random=0.01@0", "INCONCLUSIVE", True), ("class=3", "PASS", True)]
    assert [c["sure"].removeprefix("How sure: ") for c in probed["cards"]] == [
        "strong evidence the data are still there", "no evidence either way", "strong evidence the data are gone"]
    assert all(near(pixels, colour) > 200 for colour in (GREEN, RED, AMBER))


def test_the_committed_screenshots_are_the_first_screens_of_these_documents():
    """docs/img holds them, small enough for the repository, at the size the goal names."""
    from PIL import Image

    folder = Path(__file__).resolve().parents[2] / "docs" / "img"
    for which in ("demo", "inconclusive", "failed"):
        path = folder / f"report-{which}.png"
        assert path.stat().st_size < 120_000, path
        assert Image.open(path).size == (WIDTH, HEIGHT), path
