"""PDF of a page rendered from a template (WeasyPrint), with the site's stylesheets read from disk."""

from __future__ import annotations

from django.contrib.staticfiles import finders
from django.template.loader import render_to_string

STYLESHEETS = ("css/prm.css", "kpis/kpis.css")


def pdf_from_template(template: str, context: dict, *, request=None) -> bytes:
    """Render `template` and lay it out as PDF; the document's title comes from its <title>."""
    # Imported here: WeasyPrint loads pango and fonts, which only PDF downloads need.
    from weasyprint import CSS, HTML

    html = render_to_string(template, context, request=request)
    # Stylesheets come from the static files on disk, never over HTTP (no request back to this server).
    stylesheets = [CSS(filename=path) for name in STYLESHEETS if (path := finders.find(name))]
    return HTML(string=html, base_url=None).write_pdf(stylesheets=stylesheets)
