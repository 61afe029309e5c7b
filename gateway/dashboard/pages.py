"""Whole pages: the overview at /dashboard and one tenant's page at /dashboard/tenants/{id}.

A page is the shell from `html.py` around the sections of `usage.py`, `panels.py` and
`requests.py`, in the order a reader asks the questions: how much, on what, who, is anything wrong,
and which requests.
"""

from __future__ import annotations

from gateway.dashboard import panels, usage
from gateway.dashboard.data import PageData
from gateway.dashboard.fmt import esc, iso_z
from gateway.dashboard.html import page
from gateway.dashboard.insights import InsightsData
from gateway.dashboard.params import SPANS, View
from gateway.dashboard.requests import requests

SECTIONS = (
    ("daily", "Daily cost"), ("tenants", "Tenants"), ("models", "Models"), ("tokens", "Tokens"), ("latency", "Latency"),
    ("budgets", "Budgets"), ("anomalies", "Anomalies"), ("requests", "Requests"),
)  # fmt: skip


def _nav(view: View) -> str:
    items = [(ident, label) for ident, label in SECTIONS if not (view.page_tenant and ident == "tenants")]
    links = "".join(f'<li><a href="#{ident}">{esc(label)}</a></li>' for ident, label in items)
    if view.page_tenant is not None:
        links = f'<li><a href="/dashboard{esc(view.carry())}">All tenants</a></li>' + links
    return f"<ul>{links}</ul>"


def _choice(view: View, label: str, current: bool, query: str) -> str:
    mark = ' aria-current="true"' if current else ""
    return f'<a href="{esc(view.path())}{esc(query)}"{mark}>{esc(label)}</a>'


def _switch(view: View, currency: str) -> str:
    money = [
        _choice(view, f"{currency} (reporting)", not view.price_mode, view.query(currency="reporting")),
        _choice(view, "price currencies", view.price_mode, view.query(currency="price")),
    ]
    spans = [_choice(view, f"{d} days", view.days == d, view.query(days=d)) for d in SPANS]
    return f"<span>Money in: {' · '.join(money)}</span><span>Reach: {' · '.join(spans)}</span>"


def _footer(data: PageData, view: View) -> str:
    return (
        f"<p>Times are UTC. Drawn at {esc(iso_z(data.now))} from the event store. "
        f'Prometheus metrics: <a href="/metrics">/metrics</a>. All raw events: '
        f'<a href="/admin/export?format=csv">/admin/export?format=csv</a> (admin API).</p>'
    )


def _body(data: PageData, insights: InsightsData, view: View) -> str:
    parts = [usage.period_cards(data, view), usage.daily(data, view)]
    breakdowns = [
        usage.breakdown("features", "Cost by feature", "Feature", data.features, data, view),
        usage.breakdown("models", "Cost by model", "Model", data.models, data, view),
        usage.breakdown("providers", "Cost by provider", "Provider", data.providers, data, view),
    ]
    if view.page_tenant is None:
        breakdowns.insert(0, usage.top_tenants(data, view))
    parts.append('<div class="grid">' + "".join(breakdowns) + "</div>")
    parts += [usage.tokens(data, view), usage.latency(data, view)]
    parts.append(panels.all_panels(insights, view))
    parts.append(requests(data, view))
    return "".join(parts)


def render(data: PageData, insights: InsightsData, view: View) -> str:
    if view.page_tenant is None:
        title, heading = "Meterway dashboard", "Where the money goes"
    else:
        title, heading = f"Meterway: tenant {view.page_tenant}", f"Tenant {view.page_tenant}"
    return page(title, heading, _nav(view), _switch(view, data.currency), _body(data, insights, view),
                _footer(data, view))  # fmt: skip
