"""The dashboard page. A placeholder until the reporting work: live totals by activity type,
read through the reader handle so it never waits behind the sink."""

from __future__ import annotations

from html import escape

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SME dashboard</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}
table{{border-collapse:collapse}}
td,th{{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}}
.kpi{{display:inline-block;margin:0 1.5rem 1rem 0;padding:1rem;
border:1px solid #ccc;border-radius:6px}}
.kpi b{{display:block;font-size:1.6rem}}</style></head>
<body><h1>Sequential Messaging Engine</h1>
<p>Activity totals from ClickHouse (reporting dashboards arrive with the reporting work).</p>
<div class="kpi" id="kpi-total"><b>{total}</b>activities</div>
<table id="totals"><thead><tr><th>activity type</th><th>count</th></tr></thead>
<tbody>{rows}</tbody></table></body></html>"""


def render_placeholder(totals: list[tuple[str, int]]) -> str:
    rows = (
        "".join(
            f'<tr data-type="{escape(kind)}"><td>{escape(kind)}</td><td>{count}</td></tr>'
            for kind, count in totals
        )
        or '<tr><td colspan="2">no activity yet</td></tr>'
    )
    return PAGE.format(total=sum(count for _, count in totals), rows=rows)
