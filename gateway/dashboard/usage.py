"""The usage sections of a page: period cards, daily cost, top tenants, breakdowns, tokens per hour, latency.

Each function takes the `PageData` and the `View` and returns a section's HTML. Money follows the
currency switch: one amount in the reporting currency, or one amount per price currency (never
converted). Sections carry their time range in `data-since` / `data-until`, the same ISO times the
admin query API takes, and every chart is followed by a table of its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from gateway.dashboard import svg
from gateway.dashboard.data import Line, PageData, Period, day_label
from gateway.dashboard.fmt import change, compact, count, count_html, esc, millis, money, money_html, moneys_html
from gateway.dashboard.html import Column, section, table
from gateway.dashboard.params import View, tenant_path
from storage.timerange import TimeRange, iso


def range_attrs(rng: TimeRange, prefix: str = "") -> str:
    """The range as the admin query API takes it (`since`, `until`), to the microsecond."""
    since = f' data-{prefix}since="{iso(rng.since)}"' if rng.since else ""
    return f'{since} data-{prefix}until="{iso(rng.until)}"'


def cost_html(line: Line, view: View, currency: str) -> str:
    shown = moneys_html(dict(line.costs)) if view.price_mode else money_html(line.cost, currency)
    return shown + unpriced_html(line)


def unpriced_html(line: Line) -> str:
    """Requests the book could not price are in no amount shown: say how many, so none reads as free."""
    if not line.unpriced:
        return ""
    return (f'<br><span class="muted unpriced" title="no price in the price book: not in the amount">'
            f"+ {count(line.unpriced)} unpriced</span>")  # fmt: skip


def export_link(view: View, name: str, label: str = "Download CSV") -> str:
    return f'<a href="{esc(view.path())}/export/{name}.csv{esc(view.query())}">{esc(label)}</a>'


def _amounts(line: Line, view: View, currency: str) -> dict[str, Decimal]:
    return dict(line.costs) if view.price_mode else {currency: line.cost}


def period_cards(data: PageData, view: View) -> str:
    cards = []
    for i, period in enumerate(data.periods):
        cards.append(_card(f"period-{i}", period, view, data.currency))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _card(ident: str, period: Period, view: View, currency: str) -> str:
    now, before = _amounts(period.current, view, currency), _amounts(period.previous, view, currency)
    shown = now or {currency: Decimal(0)}
    deltas = []
    for cur in sorted(set(shown) | set(before)):
        text, direction = change(shown.get(cur, Decimal(0)), before.get(cur, Decimal(0)))
        arrow = {"up": "▲ ", "down": "▼ ", "flat": ""}[direction]
        label = f"{cur} " if len(shown) > 1 or cur not in shown else ""
        was = money(before.get(cur, Decimal(0)), cur)
        deltas.append(f'<span class="{direction}">{arrow}{esc(label)}{esc(text)}</span> vs {esc(period.against)} '
                      f"({esc(was)})")  # fmt: skip
    c = period.current
    attrs = range_attrs(period.rng) + range_attrs(period.prev_rng, "prev-")
    return (
        f'<section class="card" id="{ident}" aria-labelledby="{ident}-h"{attrs}>'
        f'<h2 id="{ident}-h">{esc(period.name)}</h2><p class="big">{moneys_html(shown)}{unpriced_html(c)}</p>'
        f'<p class="delta">{"<br>".join(deltas)}</p>'
        f'<p class="note">{count(c.requests)} requests · {count(c.errors)} errors · '
        f"{compact(c.total_tokens)} tokens</p>"
        "</section>"
    )


def daily(data: PageData, view: View) -> str:
    currencies = sorted({cur for line in data.daily for cur, _ in line.costs}) if view.price_mode else [data.currency]
    charts = []
    for cur in currencies or [data.currency]:
        bars = []
        for line in data.daily:
            amount = dict(line.costs).get(cur, Decimal(0)) if view.price_mode else line.cost
            bars.append(svg.Bar(day_label(line.key), float(amount), f"{line.key}: {money(amount, cur)}, "
                                f"{line.requests:,} requests"))  # fmt: skip
        title = f"Cost per day in {cur}, last {view.days} days"
        desc = f"Bar chart of the cost of each day (UTC) in {cur}; the table below lists the same numbers."
        chart = svg.bar_chart(bars, title=title, desc=desc, ident=f"daily-{cur}", fmt=_axis_money(cur))
        label = f'<h3 class="note">In {esc(cur)}</h3>' if view.price_mode else ""
        charts.append(f'{label}<div class="chart-box">{chart}</div>')
    rows = [[esc(line.key.isoformat()), cost_html(line, view, data.currency), count_html(line.requests),
             count_html(line.total_tokens)] for line in reversed(data.daily)]  # fmt: skip
    cols = [Column("Day (UTC)"), Column("Cost", True), Column("Requests", True), Column("Tokens", True)]
    details = f"<details><summary>Cost per day as a table</summary>{table('Cost per day', cols, rows)}</details>"
    note = f'<p class="note">{export_link(view, "daily")}</p>'
    return section("daily", f"Daily cost, last {view.days} days", "".join(charts) + details + note,
                   range_attrs(data.span))  # fmt: skip


def _axis_money(currency: str) -> svg.Format:
    def label(value: float) -> str:
        if value >= 1000:
            return money(Decimal(round(value)), currency).split(".")[0]
        return money(Decimal(str(value)), currency)

    return label


def _share(line: Line, total: Decimal) -> str:
    if not total:
        return "–"
    pct = line.cost / total * 100
    return f'<meter min="0" max="100" value="{pct:.1f}" aria-hidden="true"></meter> {pct:.1f}%'


def top_tenants(data: PageData, view: View) -> str:
    total = sum((p.cost for p in data.tenants), Decimal(0))
    rows = []
    for line in data.tenants:
        name = esc(line.key) if line.key is not None else '<span class="muted">(none)</span>'
        link = f'<a href="{esc(tenant_path(str(line.key)))}{esc(view.carry())}">{name}</a>' if line.key else name
        share = [] if view.price_mode else [_share(line, total)]
        counts = [count_html(n) for n in (line.requests, line.errors, line.input_tokens, line.output_tokens)]
        rows.append([link, cost_html(line, view, data.currency), *share, *counts])
    cols = [Column("Tenant"), Column("Cost", True), *([] if view.price_mode else [Column("Share of top 10", True)]),
            Column("Requests", True), Column("Errors", True), Column("Input tokens", True),
            Column("Output tokens", True)]  # fmt: skip
    body = table(f"The ten tenants with the highest cost, last {view.days} days", cols, rows)
    body += f'<p class="note">{export_link(view, "tenants", "Download CSV (all tenants)")}</p>'
    return section("tenants", "Top tenants", body, range_attrs(data.span))


def breakdown(ident: str, title: str, key_name: str, found: Sequence[Line], data: PageData, view: View) -> str:
    rows = [[esc(line.key) if line.key is not None else '<span class="muted">(none)</span>',
             cost_html(line, view, data.currency), count_html(line.requests), count_html(line.total_tokens)]
            for line in found]  # fmt: skip
    cols = [Column(key_name), Column("Cost", True), Column("Requests", True), Column("Tokens", True)]
    body = table(f"{title}, last {view.days} days, highest cost first", cols, rows)
    body += f'<p class="note">{export_link(view, ident)}</p>'
    return section(ident, title, body, range_attrs(data.span))


def tokens(data: PageData, view: View) -> str:
    labels = [_hour_label(line.key) for line in data.tokens]
    series = [
        svg.Series("Input tokens", [float(x.input_tokens) for x in data.tokens],
                   [f"{_hour_label(x.key, True)}: {x.input_tokens:,} input tokens" for x in data.tokens]),
        svg.Series("Output tokens", [float(x.output_tokens) for x in data.tokens],
                   [f"{_hour_label(x.key, True)}: {x.output_tokens:,} output tokens" for x in data.tokens]),
    ]  # fmt: skip
    chart = svg.line_chart(labels, series, title="Input and output tokens per hour, last 48 hours",
                           desc="Line chart: input tokens (solid) and output tokens (dashed) per UTC hour.",
                           ident="tokens-chart")  # fmt: skip
    rows = [[esc(_hour_label(x.key, True)), count_html(x.requests), count_html(x.input_tokens),
             count_html(x.output_tokens)] for x in reversed(data.tokens) if x.requests]  # fmt: skip
    cols = [Column("Hour (UTC)"), Column("Requests", True), Column("Input tokens", True), Column("Output tokens", True)]
    body = f'<div class="chart-box">{chart}</div><details><summary>Tokens per hour as a table</summary>'
    body += table("Tokens per hour (hours with traffic)", cols, rows) + "</details>"
    body += f'<p class="note">{export_link(view, "tokens")}</p>'
    return section("tokens", "Token trend: input vs output per hour", body, range_attrs(data.hours))


def _hour_label(hour: datetime, full: bool = False) -> str:
    if full:
        return hour.strftime("%Y-%m-%d %H:00")
    return hour.strftime("%b %d") if hour.hour == 0 else hour.strftime("%H:00")


def latency(data: PageData, view: View) -> str:
    rows = []
    for row in data.latency.rows:
        name = "All models" if row[0] is None else esc(row[0])
        rows.append([name, count_html(row[1]), *(esc(millis(v)) for v in row[2:])])
    cols = [Column("Model"), Column("Requests", True), *(Column(f"{k} {p}", True) for k in ("Total", "First byte")
                                                         for p in ("p50", "p95", "p99"))]  # fmt: skip
    body = table("Latency percentiles of successful requests, last 24 hours (first byte: streams only)", cols, rows,
                 empty="No successful requests in the last 24 hours")  # fmt: skip
    body += f'<p class="note">{export_link(view, "latency")}</p>'
    return section("latency", "Latency", body, range_attrs(data.latency_range))
