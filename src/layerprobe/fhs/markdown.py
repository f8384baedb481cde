"""The markdown a report writes, and its HTML: user strings always arrive as plain text.

Dataset, class, model, adapter and site names, prompts and paths come from stores and results
tables, which anyone can write; a name like ``<img src=x onerror=...>`` or ``[x](javascript:...)``
must show as those characters in ``report.md``, ``profile.md`` and ``report.html``, never as markup.
So every such string goes through :func:`md_escape` (the one escaping function), and
:func:`markdown_to_html` converts exactly the subset written here (headings, paragraphs, lists,
pipe tables, images, ``**``, ``<ins>``, inline code), undoing those escapes and escaping for HTML.

What :func:`md_escape` emits is safe inside a table cell, in running text and inside a code span:
no backtick (it becomes ``'``: a code span cannot be escaped from the inside), no raw ``<``, ``>``
or ``&`` (HTML entities, as ``html.escape`` writes them), ``|`` as ``\\|`` (GFM tables), no line
break; outside code spans (``code=False``) the markdown punctuation ``\\ * [ ] ~`` is also
backslash-escaped. Underscores are left alone: names are full of them, and GitHub's markdown never
emphasises inside a word.
"""

from __future__ import annotations

import html
import re

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_TEXT_PUNCTUATION = "\\*[]~"
"""Escaped with a backslash outside code spans (emphasis, links, strike-through, escapes themselves)."""


def md_escape(text: object, *, code: bool = False) -> str:
    """``text`` as markdown that shows exactly these characters (``code``: inside a code span)."""
    out = []
    for char in str(text if text is not None else ""):
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char == "`":
            out.append("'")
        elif char in "\r\n":
            out.append(" ")
        elif char == "|" or (not code and char in _TEXT_PUNCTUATION):
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


_TABLE_SEP = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
_IMAGE = re.compile(r"!\[((?:\\.|[^\]\\])*)\]\(([^)]*)\)")
_INLINE = re.compile(r"`([^`]*)`|\\(.)|(&(?:amp|lt|gt|quot|#39);)|(\*\*)|(</?ins>)|([^`\\&*<]+|.)", re.DOTALL)
"""Inline tokens: code span, backslash escape, entity, ``**``, our ``<ins>`` tags, other text."""


def markdown_to_html(text: str, *, title: str = "layerprobe report") -> str:
    """Render the markdown subset a report writes as a standalone HTML page."""
    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_html_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("!["):
            m = _IMAGE.match(line)
            alt, src = (_plain(m.group(1)), m.group(2)) if m else ("", "")
            body.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}"></figure>')
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            body.append(_html_table(block))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_html_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ", "![")):
                para.append(lines[i])
                i += 1
            body.append(f"<p>{_html_inline(' '.join(para))}</p>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.92em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f5f5f5;padding:0 3px}ins{text-decoration:underline}"
    )
    return f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{style}</style></head>\n<body>\n' + "\n".join(body) + "\n</body></html>\n"


def _html_table(block: list[str]) -> str:
    rows = [_split_row(r) for r in block if not _TABLE_SEP.match(r)]
    if not rows:
        return ""
    head = "".join(f"<th>{_html_inline(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _split_row(row: str) -> list[str]:
    """Cells of a table row; an escaped ``\\|`` stays in its cell (unescaped later, with the rest)."""
    cells = re.split(r"(?<!\\)((?:\\\\)*)\|", row.strip())
    # re.split keeps the captured run of escaped backslashes before each separator: glue it back on
    merged = [cells[0]]
    for k in range(1, len(cells), 2):
        merged[-1] += cells[k]
        merged.append(cells[k + 1])
    return [c.strip() for c in merged[1:-1]]


def _html_inline(text: str) -> str:
    out: list[str] = []
    bold: list[int] = []  # positions in ``out`` of ``**`` tokens, paired at the end
    for m in _INLINE.finditer(text):
        code, escaped, entity, stars, ins, other = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code.replace(chr(92) + '|', '|'), quote=False)}</code>")
        elif escaped is not None:
            out.append(html.escape(escaped, quote=False))
        elif entity is not None:
            out.append(entity)
        elif stars is not None:
            bold.append(len(out))
            out.append("**")
        elif ins is not None:
            out.append(ins)
        else:
            out.append(html.escape(other, quote=False))
    for k in range(0, len(bold) - 1, 2):
        out[bold[k]], out[bold[k + 1]] = "<strong>", "</strong>"
    return "".join(out)


def _plain(markdown: str) -> str:
    """The characters a markdown text (escapes and entities, no markup) shows."""
    return html.unescape(re.sub(r"\\(.)", r"\1", markdown))
