"""The dashboard's query string: what a page shows, parsed and validated, and turned back into links.

Every choice lives in the URL, so a view can be bookmarked, shared and reloaded, and every control
is a plain link or a GET form that works without JavaScript. A bad value is a 400 page that names
the parameter, like the admin API.

    currency  reporting (default: money in the reporting currency) | price (in each price currency)
    days      7 | 30 (default) | 90: the reach of the daily chart and the breakdowns
    tenant, model, status, since, cursor: filters and paging of the recent requests table
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from storage.params import check_known
from storage.queries import parse_status
from storage.timerange import QueryError, parse_time

MODES = ("reporting", "price")
SPANS = (7, 30, 90)
WINDOWS = (("1h", "last hour"), ("24h", "last 24 hours"), ("7d", "last 7 days"), ("30d", "last 30 days"))
STATUSES = (("", "any status"), ("ok", "succeeded"), ("error", "failed"), ("2xx", "2xx"), ("4xx", "4xx"),
            ("5xx", "5xx"))  # fmt: skip
KNOWN = frozenset({"currency", "days", "tenant", "model", "status", "since", "cursor"})


@dataclass(frozen=True, slots=True)
class View:
    currency: str = "reporting"
    days: int = 30
    tenant: str | None = None  # the requests filter (the page's tenant on a tenant page)
    model: str | None = None
    status: str | None = None
    since: str = "24h"
    cursor: str | None = None
    page_tenant: str | None = None  # set on /dashboard/tenants/{id}; not a query parameter

    @property
    def price_mode(self) -> bool:
        return self.currency == "price"

    def query(self, **changes: Any) -> str:
        """The query string of this view with `changes` (paging restarts unless a cursor is given)."""
        view = replace(self, **({"cursor": None} | changes))
        default = View()
        pairs = [
            (f.name, getattr(view, f.name))
            for f in fields(View)
            if f.name != "page_tenant" and getattr(view, f.name) not in (None, getattr(default, f.name))
        ]
        if view.page_tenant is not None:
            pairs = [(k, v) for k, v in pairs if k != "tenant"]
        return "?" + urlencode(pairs) if pairs else ""

    def carry(self) -> str:
        """The query string of the page-wide choices (currency, reach) alone, for links to another page."""
        return View(self.currency, self.days).query()

    def path(self) -> str:
        return "/dashboard" if self.page_tenant is None else tenant_path(self.page_tenant)


def tenant_path(tenant: str) -> str:
    return f"/dashboard/tenants/{quote(tenant, safe='')}"


def parse_view(params: Mapping[str, str], page_tenant: str | None = None) -> View:
    check_known(params.keys(), KNOWN)
    p = {k: v.strip() for k, v in params.items() if v.strip()}
    currency = p.get("currency", "reporting")
    if currency not in MODES:
        raise QueryError("currency", f"expected reporting or price, got {currency!r}")
    days_text = p.get("days", "30")
    if not days_text.isdecimal() or int(days_text) not in SPANS:
        raise QueryError("days", f"expected one of {', '.join(map(str, SPANS))}, got {days_text!r}")
    status = p.get("status")
    if status is not None:
        parse_status(status)
    since = p.get("since", "24h")
    parse_time("since", since, datetime.now(UTC))
    tenant = page_tenant if page_tenant is not None else p.get("tenant")
    return View(currency, int(days_text), tenant, p.get("model"), status, since, p.get("cursor"), page_tenant)
