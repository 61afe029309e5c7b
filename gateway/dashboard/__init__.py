"""The built-in dashboard: where the money goes, in a browser, straight from the event store.

Server-side HTML with inline SVG charts; no script, no build step, nothing fetched from elsewhere.
`routes(gateway_of)` gives the Starlette routes `create_app` mounts under /dashboard.

    routes.py          routes, access check, CSV downloads
    params.py          the query string (currency switch, reach, request filters)
    data.py            every number of a page, from storage.queries
    insights.py        the seam for budgets, anomalies, forecast, recommendations
    store_insights.py  those four computed from the event store with governance's functions
    pages.py, usage.py, panels.py, requests.py, html.py   the HTML
    svg.py, fmt.py     charts; numbers, money and escaping
"""

from gateway.dashboard.routes import routes

__all__ = ["routes"]
