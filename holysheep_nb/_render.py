"""Small key/value tables as aligned text (terminals) and HTML (Jupyter), for reports.

A table is a title and sections; a section is a heading ('' for none) and rows of
``(label, value, note)``. The run report and the dry-run estimate both render this way.
"""

from __future__ import annotations

import html

Row = tuple[str, str, str]
Sections = list[tuple[str, list[Row]]]


def render_text(title: str, sections: Sections) -> str:
    """Aligned plain text: labels left, values right, notes after."""
    lines = [title]
    for heading, rows in sections:
        if heading:
            lines.append(heading)
        label_width = max(len(label) for label, _, _ in rows) + 2
        value_width = max(len(value) for _, value, _ in rows)
        for label, value, note in rows:
            line = f"  {label:<{label_width}}{value:>{value_width}}"
            lines.append(f"{line}   {note}" if note else line)
    return "\n".join(lines)


def render_html(title: str, sections: Sections, css_class: str) -> str:
    """A compact HTML table with the title as its caption; every string is escaped."""
    esc = html.escape
    parts = [
        f'<table class="{esc(css_class)}">',
        f'<caption style="text-align:left"><b>{esc(title)}</b></caption>',
    ]
    for heading, rows in sections:
        if heading:
            parts.append(f'<tr><th colspan="3" style="text-align:left">{esc(heading)}</th></tr>')
        parts.extend(
            f'<tr><td style="text-align:left">{esc(label)}</td>'
            f'<td style="text-align:right">{esc(value)}</td>'
            f'<td style="text-align:left">{esc(note)}</td></tr>'
            for label, value, note in rows
        )
    parts.append("</table>")
    return "\n".join(parts)
