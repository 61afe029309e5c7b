"""The dashboard's page shell and building blocks: the document, its stylesheet, sections and tables.

Semantic HTML only: a banner with the navigation, one `main`, `section`s labelled by their headings,
tables with captions and scoped header cells, numbers in right-aligned tabular figures. The small
stylesheet is inline (no request for it, nothing to cache-bust) and lays the page out in a grid
that collapses to one column on a phone; wide tables scroll sideways inside their box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.dashboard.fmt import esc

CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1b1f24;--muted:#57606a;--line:#d0d7de;--accent:#0b5cad;--s0:#0b5cad;
--s1:#b3470b;--up:#a40e26;--down:#1a7f37;--warn:#fff8c5;--warn-line:#d4a72c;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--ink:#e6edf3;--muted:#9da7b3;--line:#30363d;
--accent:#58a6ff;--s0:#58a6ff;--s1:#f0883e;--up:#ff7b72;--down:#3fb950;--warn:#3b2e00;--warn-line:#9e6a03}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","PingFang SC",sans-serif;
background:var(--bg);color:var(--ink)}
a{color:var(--accent)}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.skip{position:absolute;left:-999px;top:0;background:var(--card);padding:.5rem 1rem;z-index:9}
.skip:focus{left:.5rem}
header[role=banner]{background:var(--card);border-bottom:1px solid var(--line)}
.bar{max-width:1240px;margin:0 auto;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.5rem;
align-items:center}
.brand{font-weight:700;font-size:1.1rem;margin:0}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem 1rem}
.switch{margin-left:auto;display:flex;flex-wrap:wrap;gap:.25rem .75rem;font-size:.9rem}
.switch a[aria-current]{font-weight:700;color:var(--ink);text-decoration:none}
main{max-width:1240px;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.25rem 0 1rem}
h2{font-size:1.1rem;margin:0 0 .6rem}
.grid{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr))}
.cards{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(min(100%,220px),1fr));margin-bottom:1rem}
section,.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem;min-width:0}
section{margin-bottom:1rem}
.grid>section{margin-bottom:0}
.grid{margin-bottom:1rem}
.card h2{font-size:.95rem;color:var(--muted);font-weight:600;margin:0}
.big{font-size:1.6rem;font-weight:700;margin:.2rem 0;font-variant-numeric:tabular-nums}
.delta{font-size:.9rem;color:var(--muted);margin:0}
.delta .up{color:var(--up)}.delta .down{color:var(--down)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding-bottom:.3rem}
th,td{padding:.35rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{font-weight:600;white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.prose{min-width:16rem}
tbody th{font-weight:500}
.muted,.note{color:var(--muted)}
.note{font-size:.9rem;margin:.4rem 0 0}
.chart-box{overflow-x:auto}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:var(--line);stroke-width:1}
svg .axis{stroke:var(--muted);stroke-width:1}
svg text{fill:var(--muted);font-size:15px}
svg .legend{fill:var(--ink)}
svg .empty{font-size:15px}
svg .bar.series-0{fill:var(--s0)}
svg .line{fill:none;stroke-width:2.5}
svg .line.series-0{stroke:var(--s0)}
svg .line.series-1{stroke:var(--s1);stroke-dasharray:7 4}
svg .dot{stroke:none;fill-opacity:0}
svg .dot:hover{fill-opacity:1}
svg .dot.series-0{fill:var(--s0)}svg .dot.series-1{fill:var(--s1)}
details{margin-top:.5rem}
summary{cursor:pointer;color:var(--accent)}
form.filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:flex-end;margin-bottom:.75rem}
form.filters label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted);gap:.15rem}
select,input,button{font:inherit;padding:.3rem .5rem;border:1px solid var(--line);border-radius:6px;
background:var(--card);color:var(--ink);min-height:2.2rem}
button{background:var(--accent);color:#fff;border-color:var(--accent);cursor:pointer}
.alert{background:var(--warn);border:1px solid var(--warn-line);border-radius:6px;padding:.5rem .75rem;margin:.4rem 0}
meter{width:100%;height:.8rem}
.pager{display:flex;gap:1rem;margin-top:.6rem}
footer{max-width:1240px;margin:0 auto;padding:0 1rem 2rem;color:var(--muted);font-size:.85rem}
ul.plain{margin:.3rem 0 0;padding-left:1.1rem}
@media (max-width:600px){.big{font-size:1.35rem}main{padding:.6rem}section,.card{padding:.75rem}
/* a phone scrolls a chart sideways; right-to-left boxes open on the latest data */
.chart-box{direction:rtl}svg.chart{direction:ltr;min-width:640px}svg text{font-size:20px}}
"""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    numeric: bool = False
    prose: bool = False  # sentences: kept wide enough to read on a phone


def table(caption: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, empty: str = "No data") -> str:
    """A table of already-escaped cell HTML; the first cell of each row is its row header."""
    head = "".join(f'<th scope="col"{_num(c)}>{esc(c.name)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for i, (col, cell) in enumerate(zip(columns, row, strict=True)):
            tag = "th" if i == 0 else "td"
            scope = ' scope="row"' if i == 0 else ""
            cells.append(f"<{tag}{scope}{_num(col)}>{cell}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(columns)}" class="muted">{esc(empty)}</td></tr>')
    return (
        f'<div class="scroll"><table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _num(col: Column) -> str:
    return ' class="num"' if col.numeric else ' class="prose"' if col.prose else ""


def section(ident: str, title: str, body: str, attrs: str = "") -> str:
    return (
        f'<section id="{esc(ident)}" aria-labelledby="{esc(ident)}-h"{attrs}>'
        f'<h2 id="{esc(ident)}-h">{esc(title)}</h2>{body}</section>'
    )


def page(title: str, heading: str, nav: str, switch: str, body: str, footer: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        '<header role="banner"><div class="bar"><p class="brand">Meterway</p>'
        f'<nav aria-label="Dashboard sections">{nav}</nav>'
        f'<div class="switch" role="group" aria-label="Currency">{switch}</div></div></header>'
        f'<main id="main" tabindex="-1"><h1>{esc(heading)}</h1>{body}</main>'
        f'<footer role="contentinfo">{footer}</footer></body></html>'
    )


def error_page(status: int, message: str) -> str:
    body = f'<p class="alert" role="alert">{esc(message)}</p><p><a href="/dashboard">Back to the dashboard</a></p>'
    return page(f"Meterway: error {status}", f"Error {status}", "", "", body, "")
