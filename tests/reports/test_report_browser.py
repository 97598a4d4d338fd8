"""report.html in a real headless Chromium, from disk, with the network cut off."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from chromium_probe import CHROMIUM, Chromium
from PIL import Image

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed; .ci/run installs it")]


@pytest.fixture(scope="module")
def browser():
    with Chromium() as chromium:
        yield chromium


def distinct_colours(pixels: np.ndarray) -> int:
    """How many RGB colours an (N, 3) uint8 array holds (packed to one integer: fast on 10 M pixels)."""
    packed = (pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8) | pixels[:, 2]
    return len(np.unique(packed))


def assert_not_blank(png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    non_white = float((pixels.min(axis=1) < 235).mean())
    assert non_white > 0.03, f"screenshot is nearly blank ({non_white:.1%} non-white)"
    assert distinct_colours(pixels) > 100, "screenshot has too few colours to be the report"


def test_report_loads_cleanly_on_a_desktop(browser, rendered):
    visit = browser.visit(rendered["files"]["html"], width=1280, height=900)
    assert visit.failed_loads == []
    assert visit.console_errors == []
    assert visit.layout["images"] == 12 + 4 and visit.layout["brokenImages"] == 0  # 4 real examples
    assert_not_blank(visit.screenshot)


def test_report_fits_a_phone_screen(browser, rendered):
    visit = browser.visit(rendered["files"]["html"], width=390, height=844, mobile=True)
    assert visit.failed_loads == [] and visit.console_errors == []
    assert visit.layout["scrollWidth"] <= visit.layout["innerWidth"], "the page scrolls sideways on a phone"
    assert_not_blank(visit.screenshot)


def test_the_probe_catches_a_page_that_needs_the_network(browser, tmp_path: Path):
    page = tmp_path / "needs-network.html"
    page.write_text('<!DOCTYPE html><html><body><h1>Report</h1><img src="https://example.com/logo.png">'
                    '<script src="missing-chart.js"></script></body></html>')
    visit = browser.visit(page)
    failed = " ".join(visit.failed_loads)
    assert "https://example.com/logo.png" in failed and "missing-chart.js" in failed
    assert any("Failed to load resource" in e for e in visit.console_errors)
    assert visit.layout["brokenImages"] == 1


def test_the_probe_catches_console_errors(browser, tmp_path: Path):
    page = tmp_path / "throws.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); undefinedCall();</script>"
                    "</body></html>")
    visit = browser.visit(page)
    assert any("boom" in e for e in visit.console_errors)
    assert any("Uncaught" in e or "undefinedCall" in e for e in visit.console_errors)
