"""report.pdf: WeasyPrint from the same page; poppler reads it back."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

needs_poppler = pytest.mark.skipif(not (shutil.which("pdftotext") and shutil.which("pdftoppm")),
                                   reason="poppler-utils (pdftotext, pdftoppm) is not installed; .ci/run installs it")


def distinct_colours(pixels: np.ndarray) -> int:
    """How many RGB colours an (N, 3) uint8 array holds (packed to one integer: fast on 10 M pixels)."""
    packed = (pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8) | pixels[:, 2]
    return len(np.unique(packed))


def words(text: str) -> str:
    return " ".join(text.split())


@needs_poppler
def test_pdf_text_holds_the_summary_every_target_and_every_table_heading(rendered):
    text = words(subprocess.run(["pdftotext", "-enc", "UTF-8", str(rendered["files"]["pdf"]), "-"],
                                check=True, capture_output=True, text=True).stdout)
    page = rendered["files"]["html"].read_text()
    for needle in ("Unlearning audit report", "Summary", "Audit failed", "Residual leakage", "Forget quality",
                   "Evidence behind the verdict", "Power check:", "How sure: strong evidence the data are gone",
                   "How sure: no evidence either way", "Not evidence of erasure", "Membership inference",
                   "Model inversion", "Method and limits", "How the verdict is reached", "Provenance", "Glossary",
                   "GDPR Article 17", "EDPB Opinion 28/2024", "Thudi", "Zhang", "Hayes"):
        assert needle in text, needle
    for target in rendered["doc"]["targets"]:
        assert target["name"] in text
    captions = [html.unescape(re.sub("<[^>]+>", "", c)) for c in re.findall(r"<caption>(.*?)</caption>", page)]
    assert len(captions) >= 10
    for caption in captions:
        assert words(caption) in text, caption
    headings = {html.unescape(re.sub("<[^>]+>", "", h)) for h in re.findall(r"<th[^>]*>(.*?)</th>", page)}
    for heading in headings:
        for word in heading.split():  # column headings may wrap inside narrow cells
            assert word in text, heading
    # Failures first in the PDF too.
    summary = text[text.index("Summary: each forget request"):]
    assert summary.index("samples=forget-ids.txt") < summary.index("random=0.01@0") < summary.index("class=3")


@needs_poppler
def test_pdf_first_page_renders_and_is_not_blank(rendered, tmp_path):
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(rendered["files"]["pdf"]),
                    str(tmp_path / "page")], check=True, capture_output=True)
    (png,) = tmp_path.glob("page*.png")
    image = Image.open(png).convert("RGB")
    assert image.width > 200 and image.height > 300
    pixels = np.asarray(image).reshape(-1, 3)
    ink = float((pixels.min(axis=1) < 200).mean())
    assert ink > 0.02, f"page 1 is nearly blank ({ink:.1%} ink)"
    assert distinct_colours(pixels) > 50


def test_pdf_is_a_pdf_with_vector_figures(rendered):
    data = rendered["files"]["pdf"].read_bytes()
    assert data.startswith(b"%PDF-")
    # matplotlib's curves stay paths: no raster image the size of a figure was embedded for them.
    assert data.count(b"/Subtype /Image") <= 12 + 4 + 2  # the inversion images and real examples, at most 2 more


@needs_poppler
def test_no_page_ends_with_a_heading_caption_or_glossary_term_and_short_boxes_stay_whole(rendered):
    """What introduces a table, a section or a definition is printed on the page of what it introduces;
    the notes and the advice of an undecided request are not cut by a page break."""
    pdf, page = rendered["files"]["pdf"], rendered["files"]["html"].read_text()
    pages = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(pdf), "-"], check=True, capture_output=True,
                           text=True).stdout.split("\f")
    pages = [[line.strip() for line in p.splitlines() if line.strip()] for p in pages if p.strip()]
    introducers = {words(html.unescape(re.sub("<[^>]+>", "", t)))
                   for t in re.findall(r"<(?:h[234]|caption|dt)\b[^>]*>(.*?)</(?:h[234]|caption|dt)>", page, re.S)}
    assert {"Membership inference metrics", "Cost of the unlearning step", "Gate", "Not memorised"} <= introducers
    for number, lines in enumerate(pages, 1):
        body = [line for line in lines if not line.startswith("amnesia-audit: unlearning audit report")]
        assert body and words(body[-1]) not in introducers, f"page {number} ends with {body[-1]!r}"
    notes = re.findall(r'<ul class="notes">(.*?)</ul>', page, re.S)[0]
    first_words = [words(html.unescape(re.sub("<[^>]+>", "", li)))[:40]
                   for li in re.findall(r"<li>(.*?)</li>", notes, re.S)]
    advice = rendered["doc"]["targets"][2]["advice"]
    for kept_together in (first_words, ["What would decide it", words(advice)[-30:]]):
        on = [next(n for n, p in enumerate(pages) if needle in words(" ".join(p))) for needle in kept_together]
        assert len(set(on)) == 1, f"{kept_together} spread over pages {on}"
