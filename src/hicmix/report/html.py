"""HTML pieces of the run report: one self-contained page (inline CSS, images as data: URIs)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Mapping, Sequence

from hicmix.evaluate.metrics_table import format_mean_sd
from hicmix.report.tables import Table, is_decay, is_ours, seeds_of

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;margin:0;
  background:#fafafa;line-height:1.45}
main{max-width:72em;margin:0 auto;padding:1em 2em 4em;background:#fff}
h1{margin:0.4em 0 0.1em}h2{border-bottom:2px solid #ddd;padding-bottom:0.2em;margin-top:2em}
h3{margin:1.4em 0 0.4em}
nav{font-size:90%;margin:0.4em 0 1em}nav a{margin-right:1.2em}
table{border-collapse:collapse;margin:0.4em 0 1em;font-size:88%}
th,td{border:1px solid #d5d5d5;padding:3px 9px;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td.l,th.l{text-align:left}
tr.ours td{background:#fdf2f0}
table.peers th{white-space:normal;vertical-align:bottom}
td.wrap{white-space:normal;min-width:16em;max-width:28em;font-size:90%}
tr.decay td{background:#f4f6f8}
.tw{overflow-x:auto}
.meta td,.meta th{text-align:left;white-space:normal}
.sentences li{margin:0.25em 0}
.note{color:#555;font-size:92%}
.notrun{color:#8a6d3b;background:#fcf8e3;border:1px solid #faebcc;padding:0.5em 0.8em;
  border-radius:4px}
.reference{border:2px dashed #8c8c8c;background:#f3f3f3;padding:0.6em 1.2em;margin-top:2em}
.reference h2{border:none;margin-top:0.4em}.reference td{white-space:normal}
.refbadge{display:inline-block;background:#666;color:#fff;font-size:80%;padding:1px 8px;
  border-radius:3px}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:88%;color:#555}.cmd code{font-size:92%;overflow-wrap:anywhere}
details{margin:0.6em 0}summary{cursor:pointer;color:#2a5db0}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:0.6em;font-size:85%;white-space:pre-wrap;
  overflow-wrap:anywhere}
code{background:#f6f8fa;padding:0 3px}
"""


def esc(value: object) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def page(title: str, body: Iterable[str]) -> str:
    """The whole document: head with inline CSS, then ``body`` parts inside <main>."""
    return "\n".join(
        [
            "<!doctype html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{esc(title)}</title>",
            f"<style>{CSS}</style></head><body><main>",
            *body,
            "</main></body></html>",
        ]
    )


def section(anchor: str, title: str, parts: Iterable[str], level: int = 2) -> str:
    """A <section> with an id, a heading and its parts."""
    return (
        f"<section id='{esc(anchor)}'><h{level}>{esc(title)}</h{level}>\n"
        + "\n".join(parts)
        + "\n</section>"
    )


def paragraph(text: str, cls: str | None = None) -> str:
    attr = f" class='{cls}'" if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def not_run(text: str) -> str:
    return f"<p class='notrun'>not run: {esc(text)}</p>"


def bullets(items: Sequence[str], cls: str = "sentences") -> str:
    return f"<ul class='{cls}'>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def details(summary: str, body: str, open_: bool = False) -> str:
    attr = " open" if open_ else ""
    return f"<details{attr}><summary>{esc(summary)}</summary>\n{body}\n</details>"


def key_values(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table class='meta'>{cells}</table>"


def image(png: bytes, alt: str, caption: str | None = None, command: str | None = None) -> str:
    """A figure with the PNG embedded as a base64 data: URI; ``command`` (the shell command that
    made its inputs) is shown under the caption."""
    data = base64.b64encode(png).decode("ascii")
    text = esc(caption) if caption else ""
    if command:
        text += f"<br><span class='cmd'>command: <code>{esc(command)}</code></span>"
    cap = f"<figcaption>{text}</figcaption>" if text else ""
    return f"<figure><img alt='{esc(alt)}' src='data:image/png;base64,{data}'>{cap}</figure>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def metric_table(table: Table, digits: int = 3, missing_rows: Sequence[str] = ()) -> str:
    """Method rows × metric columns, mean ± sd, best per column (within a pairing) in bold.

    ``missing_rows``: methods that must appear even without numbers (shown as 'not run').
    """
    marked = table.best()
    head = "".join(f"<th>{esc(c.label)}</th>" for c in table.columns)
    lines = [
        "<div class='tw'><table>",
        f"<tr><th class='l'>method</th><th class='l'>train → test</th>{head}<th>seeds</th></tr>",
    ]
    for i, row in enumerate(table.rows):
        cls = "ours" if is_ours(row.method) else ("decay" if is_decay(row.method) else "")
        cells = []
        for column in table.columns:
            stat = row.cells.get(column.metric)
            text = "–" if stat is None else format_mean_sd(stat.mean, stat.sd, digits)
            bold = (i, column.metric) in marked
            cells.append(f"<td>{'<b>' if bold else ''}{esc(text)}{'</b>' if bold else ''}</td>")
        lines.append(
            f"<tr class='{cls}'><td class='l'>{esc(row.method)}</td>"
            f"<td class='l'>{esc(row.pairing)}</td>{''.join(cells)}"
            f"<td>{seeds_of(row)}</td></tr>"
        )
    blank = "".join("<td>–</td>" for _ in table.columns)
    for method in missing_rows:
        lines.append(
            f"<tr class='decay'><td class='l'>{esc(method)}</td>"
            f"<td class='l'>not run</td>{blank}<td>0</td></tr>"
        )
    lines.append("</table></div>")
    return "\n".join(lines)


def long_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """A plain table of string cells (first columns left-aligned)."""
    head = "".join(f"<th class='l'>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='l'>{esc(r.get(c, ''))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<div class='tw'><table><tr>{head}</tr>{body}</table></div>"


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` of the reference markdown."""
    out = esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def markdown_blocks(text: str) -> str:
    """Paragraphs and pipe tables of a small markdown text (the reference section)."""
    parts, paragraph_lines, table_lines = [], [], []

    def flush() -> None:
        if paragraph_lines:
            parts.append(f"<p>{_inline(' '.join(paragraph_lines))}</p>")
            paragraph_lines.clear()
        if table_lines:
            parts.append(_pipe_table(table_lines))
            table_lines.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if paragraph_lines:
                flush()
            table_lines.append(stripped)
        elif not stripped:
            flush()
        else:
            if table_lines:
                flush()
            paragraph_lines.append(stripped)
    flush()
    return "\n".join(parts)


def _pipe_table(lines: Sequence[str]) -> str:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = [r for r in rows if not all(re.fullmatch(r":?-{3,}:?", c) for c in r)]
    head = "".join(f"<th class='l'>{_inline(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td class='l'>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
    )
    return f"<div class='tw'><table><tr>{head}</tr>{body}</table></div>"
