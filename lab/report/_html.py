"""HTML building blocks: escaping, tables, figures and the page shell.

Every string that comes from a results folder (scenario text, CSV cells, paths) goes
through :func:`esc` here, so the page builders never write raw data into the HTML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab._version import __version__

Formatter = Callable[[Any], str]

PROTOCOL_COLORS = {"tcp": "#2563eb", "udp": "#ea580c", "raw": "#16a34a"}
_FALLBACK_COLORS = ("#9333ea", "#0891b2", "#be123c", "#4d7c0f")
#: Shown for a missing value (empty CSV cell, NaN).
MISSING = "–"

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--fg); background:#fff; }
header { padding:20px 32px 12px; border-bottom:1px solid var(--line); background:var(--bg); }
header h1 { margin:0 0 4px; font-size:22px; }
header p { margin:0; color:var(--muted); }
nav { margin-top:8px; font-size:13px; }
nav a { color:var(--accent); text-decoration:none; margin-right:14px; }
main { padding:8px 32px 40px; max-width:1500px; }
section { margin:22px 0 10px; }
h2 { font-size:17px; margin:0 0 8px; padding-bottom:4px; border-bottom:2px solid var(--line); }
h3 { font-size:14px; margin:14px 0 6px; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; margin:4px 0 8px; }
th, td { padding:3px 10px; border-bottom:1px solid var(--line); text-align:right;
  white-space:nowrap; }
th { background:var(--bg); font-weight:600; white-space:normal; vertical-align:bottom; }
td.key, th.key { text-align:left; color:var(--muted); font-weight:500; }
td.text, th.text { text-align:left; }
td.wrap { text-align:left; white-space:normal; max-width:560px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:6px 28px; }
.figgrid { display:grid; grid-template-columns:repeat(2,minmax(0,1fr)); gap:4px 24px; }
.grid > div, .figgrid > div { min-width:0; }
@media (max-width:1000px) { .figgrid { grid-template-columns:minmax(0,1fr); } }
.scroll { overflow-x:auto; }
.caption { color:var(--muted); font-size:12.5px; margin:2px 0 12px; max-width:1100px; }
.note { color:var(--muted); font-style:italic; }
.banner { margin:12px 32px 0; padding:10px 16px; border-radius:6px; font-weight:600;
  background:#fef2f2; color:#991b1b; border:2px solid #dc2626; font-size:16px; }
.figure { border:1px solid var(--line); border-radius:6px; padding:4px; margin:6px 0 2px; }
pre { background:var(--bg); border:1px solid var(--line); padding:8px 12px; overflow:auto;
  font-size:12.5px; }
details summary { cursor:pointer; color:var(--accent); margin:6px 0; }
footer { color:var(--muted); font-size:12px; padding:12px 32px 24px;
  border-top:1px solid var(--line); }
.tag { display:inline-block; padding:0 7px; border-radius:9px; color:#fff; font-size:12px;
  font-weight:600; }
"""

_SCRIPT_CLOSE = re.compile(r"</script", re.IGNORECASE)


def esc(value: object) -> str:
    """HTML-escape anything for text and attribute positions."""
    return escape(str(value), quote=True)


def href(path: str) -> str:
    """A relative link target: percent-encoded, so no scheme (``javascript:``) can survive."""
    return esc(quote(path.replace("\\", "/"), safe="/"))


def protocol_color(protocol: str, index: int = 0) -> str:
    return PROTOCOL_COLORS.get(protocol, _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)])


def protocol_tag(protocol: str, index: int = 0) -> str:
    color = protocol_color(protocol, index)
    return f'<span class="tag" style="background:{color}">{esc(protocol.upper())}</span>'


def is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def fmt_value(value: object) -> str:
    """A cell for people: integers as integers, floats with enough digits, bools as yes/no."""
    if is_missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        magnitude = abs(number)
        if number.is_integer() and magnitude < 1e15:
            return str(int(number))
        if magnitude >= 1000:
            return f"{number:.0f}"
        if magnitude >= 1:
            return f"{number:.3f}"
        return f"{number:.4g}"
    return str(value)


def fmt_number(pattern: str) -> Formatter:
    """A formatter for a format pattern that leaves missing values as a dash."""

    def format_one(value: Any) -> str:
        if is_missing(value):
            return MISSING
        try:
            return pattern.format(value)
        except (TypeError, ValueError):
            return str(value)

    return format_one


def table(
    frame: pd.DataFrame,
    *,
    formats: Mapping[str, Formatter] | None = None,
    raw_html: Iterable[str] = (),
    key_column: str | None = None,
) -> str:
    """An escaped HTML table of ``frame``; columns in ``raw_html`` hold HTML built by us."""
    formats = formats or {}
    trusted = set(raw_html)
    text_columns = {
        column
        for column in frame.columns
        if column in trusted or not pd.api.types.is_numeric_dtype(frame[column])
    }

    def css(column: object) -> str:
        return "key" if column == key_column else ("text" if column in text_columns else "")

    head = "".join(f'<th class="{css(column)}">{esc(column)}</th>' for column in frame.columns)
    rows = []
    for record in frame.itertuples(index=False, name=None):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            if column in trusted:
                text = str(value)
            else:
                text = esc(formats.get(str(column), fmt_value)(value))
            cells.append(f'<td class="{css(column)}">{text}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def key_value_table(rows: Sequence[tuple[str, object]]) -> str:
    """Two columns, name and value: for meta.json and scenario settings."""
    body = "".join(
        f'<tr><td class="key">{esc(key)}</td><td class="wrap">{esc(fmt_value(value))}</td></tr>'
        for key, value in rows
    )
    return f"<table><tbody>{body}</tbody></table>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def caption(text: str) -> str:
    return f'<p class="caption">{esc(text)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def style_figure(fig: go.Figure, height: int) -> go.Figure:
    """One look for every figure; margins or legend a figure set itself are kept."""
    margin = {"l": 60, "r": 20, "t": 40, "b": 50}
    margin.update({k: v for k, v in fig.layout.margin.to_plotly_json().items() if v is not None})
    legend = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}
    legend.update({k: v for k, v in fig.layout.legend.to_plotly_json().items() if v is not None})
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin=margin,
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        legend=legend,
        hoverlabel={"namelength": -1},
    )
    return fig


def figure(fig: go.Figure, height: int) -> str:
    """A plotly figure as a div + script; plotly.js itself is in the page head, once.

    Plotly writes its JSON with ``<``, ``>`` and ``/`` as ``\\u`` escapes; the check below
    keeps that guarantee true for every plotly version: data can never close the script.
    """
    style_figure(fig, height)
    fragment: str = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        default_height=f"{height}px",
        default_width="100%",
        config={"displaylogo": False, "responsive": True},
    )
    if len(_SCRIPT_CLOSE.findall(fragment)) != fragment.lower().count("<script"):
        raise RuntimeError("plotly figure JSON contains an unescaped </script>")
    return f'<div class="figure">{fragment}</div>'


def page(title: str, subtitle: str, body: str, *, banner: str = "", nav: str = "") -> str:
    """The whole self-contained document: CSS and plotly.js inline, no external fetch."""
    from plotly.offline import get_plotlyjs  # noqa: PLC0415  (5 MB string: only when writing)

    plotly_js = get_plotlyjs()
    if _SCRIPT_CLOSE.search(plotly_js):  # would end the inline script early
        plotly_js = _SCRIPT_CLOSE.sub(r"<\\/script", plotly_js)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    banner_html = f'<div class="banner" role="alert">{banner}</div>' if banner else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js}</script>'
        "</head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p>"
        f"{f'<nav>{nav}</nav>' if nav else ''}</header>"
        f"{banner_html}<main>{body}</main>"
        f"<footer>protolab {esc(__version__)} · generated {esc(generated)} · "
        "self-contained page: no network access needed</footer>"
        "</body></html>\n"
    )


def nav_links(entries: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in entries)
