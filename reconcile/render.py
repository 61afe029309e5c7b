"""A report as a terminal table, CSV or JSON.

JSON and CSV carry every figure exactly (Decimals as plain strings, relative differences as
fractions: -0.05 is 5% under). The terminal table shows the figures a reader compares first,
with relative differences as percentages, and a header line with the verdict and the headline.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from reconcile.report import CAUSES, Difference, Line, Report, period_text
from storage.tabular import Table, decimal_text, dumps, to_csv

FORMATS = ("table", "csv", "json")
_CENTS = Decimal("0.000001")
_RIGHT = {"provider cost", "gateway cost", "cost", "requests", "input", "output", "cached"}


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return dumps(report.to_dict()).decode() + "\n"
    if fmt == "csv":
        columns, rows = report.table()
        return to_csv(Table(columns, rows))
    return terminal(report)


def terminal(report: Report) -> str:
    unit = "days" if report.bucket_width == "1d" else "hours"
    head = (
        f"{report.provider} {period_text(report.since, report.bucket_width)} to "
        f"{period_text(report.until, report.bucket_width)} (UTC {unit}, until exclusive), by {report.by}, "
        f"tolerance {_percent(report.tolerance).lstrip('+')}; costs in {report.currency}; "
        f"{'snapshot' if report.offline else 'fetched'} {report.snapshot.get('id', '-')}"
    )
    verdict = f"overall: {report.totals.verdict}, difference {_percent(report.relative_difference)}"
    columns = ["period", "model", "scope", "verdict", "provider cost", "gateway cost", "cost", "requests", "input",
               "cached", "output", "causes"]  # fmt: skip
    if report.by == "model":
        columns.remove("scope")
    rows = [_row(line, report, columns) for line in [*report.lines, report.totals]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def fmt_line(cells: list[str]) -> str:
        out = [c.rjust(w) if name in _RIGHT else c.ljust(w) for c, w, name in zip(cells, widths, columns, strict=True)]
        return "  ".join(out).rstrip()

    body = [fmt_line(columns), "  ".join("-" * w for w in widths)] + [fmt_line(r) for r in rows]
    legend = [f"  {code}: {CAUSES[code]}" for code in sorted({c for ln in report.lines for c in ln.causes})]
    return "\n".join([head, verdict, "", *body, *(["", "causes:", *legend] if legend else [])]) + "\n"


def _row(line: Line, report: Report, columns: list[str]) -> list[str]:
    d = line.differences
    cells: dict[str, str] = {
        "period": period_text(line.start, report.bucket_width) if line.start else "total",
        "model": line.model or ("(not per model)" if line.start else ""),
        "scope": line.scope or "",
        "verdict": line.verdict,
        "provider cost": _money(line.provider.cost),
        "gateway cost": _money(line.gateway.cost),
        "cost": _percent_of(d.get("cost")),
        "requests": _pair(line, "requests"),
        "input": _percent_of(d.get("input_tokens")),
        "cached": _percent_of(d.get("cached_input_tokens")),
        "output": _percent_of(d.get("output_tokens")),
        "causes": ", ".join(line.causes),
    }
    return [cells[c] for c in columns]


def _pair(line: Line, metric: str) -> str:
    p, g = line.provider.get(metric), line.gateway.get(metric)
    return f"{'-' if p is None else p}/{'-' if g is None else g}"


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.quantize(_CENTS, rounding=ROUND_HALF_EVEN):,}"


def _percent_of(diff: Difference | None) -> str:
    if diff is None or diff.absolute is None:
        return "-"
    if diff.relative is None:
        return "+inf"  # the provider reports 0 where the gateway has some
    return _percent(diff.relative)


def _percent(value: Any) -> str:
    if value is None:
        return "-"
    pct = Decimal(value) * 100
    text = decimal_text(pct.quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN))
    return f"+{text}%" if pct > 0 else f"{text}%"
