"""The one HTML page template of benchsuite's outputs (the report, ``compare``): plain,
self-contained, readable at any width (wide tables scroll inside their box)."""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
        padding: 0 1em; }}
div.scroll {{ overflow-x: auto; max-width: 100%; margin-bottom: 1.5em; }}
table.board {{ border-collapse: collapse; font-size: 12px; }}
table.board th, table.board td {{ padding: 2px 4px; border-bottom: 1px solid #ddd;
                                  text-align: right; white-space: nowrap; }}
table.board thead th {{ white-space: normal; vertical-align: bottom; }}
table.board tbody th {{ vertical-align: top; }}
table.evidence td, table.evidence th {{ white-space: normal; text-align: left; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; height: auto; }}
figcaption {{ font-size: 12px; color: #444; }}
p.warn {{ background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.5em; }}
</style></head>
<body data-images-loaded="0"><h1>{title}</h1>
{intro}
{body}
<script>
// record how many figures the browser actually decoded (read by the report's browser test)
window.addEventListener("load", () => {{
  const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = String(ok);
  document.body.dataset.imagesTotal = String(document.images.length);
}});
</script>
</body></html>
"""


def html_page(title: str, body: str, intro: str = "") -> str:
    """A whole HTML page: ``title`` (plain text, escaped here), an ``intro`` paragraph and the
    ``body`` (HTML fragments, already escaped by their authors)."""
    return _PAGE.format(title=html.escape(title), intro=f"<p>{intro}</p>" if intro else "",
                        body=body)
