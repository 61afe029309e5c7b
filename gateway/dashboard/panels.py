"""The governance sections of a page: budgets, anomalies, forecast and recommendations.

They render whatever the page's `Insights` returned (see `insights.py`): `None` reads "not
configured" with a pointer to the setting, an empty list says there is nothing to report.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.dashboard.fmt import esc, iso_z, money, money_html
from gateway.dashboard.html import Column, section, table
from gateway.dashboard.insights import AnomalyView, BudgetView, ForecastView, InsightsData, RecommendationView
from gateway.dashboard.params import View, tenant_path

NOT_CONFIGURED = '<p class="muted">Not configured. {hint}</p>'


def _tenant(name: str | None, view: View) -> str:
    if not name:
        return '<span class="muted">all tenants</span>'
    return f'<a href="{esc(tenant_path(name))}{esc(view.carry())}">{esc(name)}</a>'


def budgets(found: Sequence[BudgetView] | None) -> str:
    if found is None:
        body = NOT_CONFIGURED.format(hint="Add <code>budgets:</code> to the config to see spend against limits here.")
        return section("budgets", "Budgets", body)
    rows = []
    for b in found:
        pct = min(b.used * 100, 100)
        meter = (f'<meter min="0" max="100" low="80" high="99" optimum="0" value="{pct:.1f}" '
                 f'aria-label="{b.used * 100:.0f}% used"></meter> {b.used * 100:.0f}%')  # fmt: skip
        rows.append([esc(b.name), esc(b.scope), esc(b.period) + (" (hard)" if b.hard else ""),
                     money_html(b.spent, b.currency), money_html(b.limit, b.currency),
                     money_html(b.remaining, b.currency), meter, esc(iso_z(b.resets_at))])  # fmt: skip
    cols = [Column("Budget"), Column("Applies to"), Column("Period"), Column("Spent", True), Column("Limit", True),
            Column("Remaining", True), Column("Used", True), Column("Resets (UTC)")]  # fmt: skip
    return section("budgets", "Budgets", table("Spend this period against each budget", cols, rows,
                                               empty="No budget applies here"))  # fmt: skip


def anomalies(found: Sequence[AnomalyView] | None, view: View) -> str:
    if found is None:
        body = NOT_CONFIGURED.format(hint="Anomaly detection is switched off (<code>alerts.anomaly.enabled</code>).")
        return section("anomalies", "Anomalies", body)
    rows = []
    for a in found:
        unit = a.unit
        shown = money_html(a.observed, unit) if a.metric == "spend" else f"{int(a.observed):,} tokens"
        mean = money(a.baseline_mean, unit) if a.metric == "spend" else f"{int(a.baseline_mean):,} tokens"
        ratio = f"{a.ratio:.1f}×" if a.ratio is not None else "from zero"
        rows.append([esc(a.hour.strftime("%Y-%m-%d %H:00")), _tenant(a.tenant, view), esc(a.metric), shown,
                     esc(mean), esc(ratio)])  # fmt: skip
    cols = [Column("Hour (UTC)"), Column("Tenant"), Column("Metric"), Column("Observed", True),
            Column("Usual for that hour", True), Column("Ratio", True)]  # fmt: skip
    caption = "Hours in the last day far above the same hour on previous days"
    noun = "anomaly" if len(found) == 1 else "anomalies"
    lead = f'<p class="alert" role="status">{len(found)} {noun} in the last 24 hours</p>'
    body = (lead if found else "") + table(caption, cols, rows, empty="No anomalies in the last 24 hours")
    return section("anomalies", "Anomalies", body)


def forecast(found: ForecastView | None) -> str:
    if found is None:
        return section("forecast", "Forecast", NOT_CONFIGURED.format(hint="No forecast source is set up."))
    month = found.month.strftime("%B %Y")
    body = (
        f'<p class="big">{money_html(found.expected, found.currency)}</p>'
        f'<p class="delta">expected for {esc(month)}; about 90% likely between '
        f"{money_html(found.low, found.currency)} and {money_html(found.high, found.currency)}</p>"
        f'<p class="note">Spent so far this month: {money_html(found.spent, found.currency)}. '
        f"Method: {esc(found.method)} over up to 8 weeks of daily spend.</p>"
    )
    return section("forecast", f"Forecast: {month}", body)


def recommendations(found: Sequence[RecommendationView] | None, view: View) -> str:
    if found is None:
        return section("advice", "Recommendations", NOT_CONFIGURED.format(hint="The price book is not loaded."))
    rows = [[esc(r.advice), _tenant(r.tenant, view), esc(f"{r.provider} / {r.model}"),
             money_html(r.monthly_saving, r.currency)] for r in found]  # fmt: skip
    cols = [Column("Advice", prose=True), Column("Tenant"), Column("Provider / model"),
            Column("Saving per month", True)]  # fmt: skip
    body = table("Savings found in the last 7 days of traffic, biggest first", cols, rows,
                 empty="Nothing to recommend from the last 7 days of traffic")  # fmt: skip
    return section("advice", "Recommendations", body)


def all_panels(data: InsightsData, view: View) -> str:
    return (
        '<div class="grid">' + budgets(data.budgets) + forecast(data.forecast) + "</div>"
        + anomalies(data.anomalies, view) + recommendations(data.recommendations, view)
    )  # fmt: skip
