"""report.pdf: the same HTML, paginated by WeasyPrint (the print stylesheet; SVG figures stay vector)."""

from __future__ import annotations

import logging
from pathlib import Path

from reports.document import Document
from reports.html import render_html


def render_pdf(doc: Document, base_dir: str | Path, out_path: str | Path) -> None:
    """Write the report as PDF to ``out_path`` (callers wanting atomicity pass a temporary path)."""
    write_pdf(render_html(doc, base_dir), out_path)


def write_pdf(page: str, out_path: str | Path) -> None:
    """Paginate an already rendered report page (see :func:`reports.html.render_html`) to PDF."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: the Pango/HarfBuzz system libraries are missing
        raise RuntimeError(f"WeasyPrint cannot start ({exc}); install the Debian packages libpango-1.0-0 "
                           "libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core, or use --format html") from None
    # WeasyPrint logs every unsupported CSS property (e.g. screen-only hints) as a warning; not the reader's concern.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    # The page embeds everything (data: URIs only), so any other fetch is refused: no network, no local files.
    from weasyprint.urls import URLFetcher

    HTML(string=page, base_url=None, url_fetcher=URLFetcher(allowed_protocols={"data"})).write_pdf(str(out_path))
