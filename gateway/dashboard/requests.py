"""The recent requests section: a GET form of filters, one page of events, and links to older pages.

The form is plain HTML (selects and a submit button), so filtering works without JavaScript and
each filtered view has its own URL. Paging follows the cursor the event query returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from gateway.dashboard.data import PageData
from gateway.dashboard.fmt import count_html, esc, money_html, when
from gateway.dashboard.html import Column, section, table
from gateway.dashboard.params import STATUSES, WINDOWS, View, tenant_path
from gateway.dashboard.usage import export_link, range_attrs


def _select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str | None) -> str:
    values = [v for v, _ in options]
    if chosen and chosen not in values:
        options = [*options, (chosen, chosen)]
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if (chosen or "") == v else ""}>{esc(text)}</option>'
        for v, text in options
    )
    return f'<label for="f-{name}">{esc(label)}<select id="f-{name}" name="{name}">{opts}</select></label>'


def filter_form(data: PageData, view: View) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{esc(v)}">'
        for k, v in (("currency", view.currency), ("days", str(view.days)))
        if v != {"currency": "reporting", "days": "30"}[k]
    )
    fields = []
    if view.page_tenant is None:
        fields.append(_select("tenant", "Tenant", [("", "any tenant"), *((t, t) for t in data.tenant_choices)],
                              view.tenant))  # fmt: skip
    fields.append(_select("model", "Model", [("", "any model"), *((m, m) for m in data.model_choices)], view.model))
    fields.append(_select("status", "Status", STATUSES, view.status))
    fields.append(_select("since", "Time range", WINDOWS, view.since))
    clear = f'<a href="{esc(view.path())}{esc(view.carry())}#requests">Clear filters</a>'
    return (
        f'<form class="filters" id="filters" method="get" action="{esc(view.path())}#requests" role="search" '
        f'aria-label="Filter recent requests">{hidden}{"".join(fields)}'
        f'<button type="submit">Apply filters</button>{clear}</form>'
    )


def _cost(row: dict[str, Any], view: View) -> str:
    if view.price_mode:
        amount, currency = row["total_cost"], row["currency"]
    else:
        amount, currency = row["cost_reporting"], row["reporting_currency"]
    if amount is None or currency is None:
        return '<span class="muted">unpriced</span>' if row["total_tokens"] else "–"
    return money_html(Decimal(amount), currency)


def _status(row: dict[str, Any]) -> str:
    code = esc(row["status_code"])
    return f"{code} {esc(row['error_type'])}" if row["error_type"] else code


def requests(data: PageData, view: View) -> str:
    rows = []
    for values in data.events.rows:
        row = dict(zip(data.events.columns, values, strict=True))
        tenant = row["tenant_id"]
        tenant_cell = (f'<a href="{esc(tenant_path(tenant))}{esc(view.carry())}">{esc(tenant)}</a>' if tenant
                       else '<span class="muted">(none)</span>')  # fmt: skip
        rows.append([
            f'<time datetime="{esc(row["ts"].isoformat())}">{esc(when(row["ts"]))}</time>', tenant_cell,
            esc(row["model"] or row["model_requested"] or "–"), _cost(row, view), _status(row),
            esc(row["feature"] or "–"), "yes" if row["stream"] else "no", count_html(row["input_tokens"]),
            count_html(row["output_tokens"]), f'{row["duration_ms"]:,.0f} ms' if row["duration_ms"] else "–",
            f'<code>{esc(row["request_id"])}</code>',
        ])  # fmt: skip
    cols = [Column("Time (UTC)"), Column("Tenant"), Column("Model"), Column("Cost", True), Column("Status"),
            Column("Feature"), Column("Stream"), Column("Input tokens", True), Column("Output tokens", True),
            Column("Duration", True), Column("Request id")]  # fmt: skip
    shown = [f"{k} {v}" for k, v in (("tenant", view.tenant), ("model", view.model), ("status", view.status)) if v]
    window = dict(WINDOWS).get(view.since, f"since {view.since}")
    caption = f"Requests, newest first, {window}" + (f", {', '.join(shown)}" if shown else "")
    pager = []
    if view.cursor:
        pager.append(f'<a href="{esc(view.path())}{esc(view.query())}#requests">Newest</a>')
    if data.next_cursor:
        pager.append(f'<a rel="next" href="{esc(view.path())}{esc(view.query(cursor=data.next_cursor))}#requests">'
                     "Older requests</a>")  # fmt: skip
    body = filter_form(data, view) + table(caption, cols, rows, empty="No requests match these filters")
    body += (
        f'<div class="pager">{"".join(pager)}{export_link(view, "requests", "Download CSV (up to 1,000 rows)")}</div>'
    )
    return section("requests", "Recent requests", body, range_attrs(data.events_range))
