"""Single-request documents for the first-screen checks and the screenshots in docs/img/: the demo-like
request that passes, an undecided one, a failed one (each one target of report_documents.build_document).

``PYTHONPATH=.:tests/reports .venv/bin/python -m tests.reports.first_screen docs/img`` writes the
screenshots shown in docs/reports.md: the first screen (1280x800) of each report, in Debian's headless
Chromium.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from tests.reports.report_documents import GATE, build_document

WIDTH, HEIGHT = 1280, 800
#: document -> the name of the one target it keeps (build_document's order: pass, fail, inconclusive)
KEEP = {"demo": "class=3", "inconclusive": "random=0.01@0", "failed": "samples=forget-ids.txt"}


def single_request(doc: dict, which: str) -> dict:
    """A copy of ``doc`` (built by build_document) with only the target of ``which`` ("demo",
    "inconclusive" or "failed"); its images stay where build_document wrote them."""
    import copy

    doc = copy.deepcopy(doc)
    doc["targets"] = [t for t in doc["targets"] if t["name"] == KEEP[which]]
    passed = doc["targets"][0]["passed"]
    doc["verdict"], doc["exit_code"] = ("pass", 0) if passed else ("fail", 1)
    doc["provenance"]["command"] = f"audit run model.pt --forget {KEEP[which]} --fail-on '{GATE}'"
    if which != "inconclusive":
        doc["notes"] = [n for n in doc["notes"] if "inconclusive" not in n]
    return doc


def render_page(doc: dict, folder: Path, name: str) -> Path:
    """report.html of ``doc`` in ``folder``/``name``, its images read from ``folder`` (where build_document put them)."""
    from reports import render_files
    from reports.reading import validate

    [page] = render_files(validate(doc, "test document"), ["html"], folder / name, base_dir=folder)
    return page


def first_screen(png: bytes):
    """The top 1280x800 of a full-page screenshot, as a PIL image."""
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB").crop((0, 0, WIDTH, HEIGHT))


def write_screenshots(out: Path) -> list[Path]:
    """Render each single-request document and save its first screen, reduced to a small palette PNG."""
    import tempfile

    from chromium_probe import Chromium

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp, Chromium() as chromium:
        folder = Path(tmp)
        doc = build_document(folder)
        for which in KEEP:
            page = render_page(single_request(doc, which), folder, which)
            image = first_screen(chromium.visit(page, WIDTH, HEIGHT).screenshot)
            path = out / f"report-{which}.png"
            image.quantize(colors=64).save(path, optimize=True)
            written.append(path)
    return written


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    for path in write_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else root / "docs" / "img")):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
