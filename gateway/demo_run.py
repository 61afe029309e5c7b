"""`meterway demo`: the gateway over a simulated upstream, with history and live traffic, until Ctrl-C.

Six models of four providers, priced as OpenAI (USD) and DashScope, DeepSeek and Moonshot (CNY) by
the shipped book, answered by the built-in `demo` provider. Five tenants, each with its own features
and favourite models, send support chats, retrieval questions, meeting summaries and translations,
streamed and not, with a few upstream errors.

1. History: once serving, past days of the same traffic are generated, priced and stored through
   the ingest path (`UsageIngestor` and the sink's bulk load) in a worker thread, so the daily chart,
   the forecast and the anomaly baseline have data. Only hours after the newest stored event are
   filled, so running the demo again on the same file never counts an hour twice.
2. Live traffic at the rate the history had for this hour of this weekday (a daily rhythm with
   quieter weekends), so the anomaly rules see ordinary hours as ordinary.
3. A spend spike: after `--spike-after` seconds tenant `globex` sends a burst of long contract
   summaries to gpt-4o, far above its usual spend for the hour, which the anomaly rules flag.

Ctrl-C (or SIGTERM) stops the traffic and the history loader, then the gateway shuts down as
always (in-flight requests finish, every event is flushed) and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx

from gateway.app import MeterwayApp
from gateway.config import Config, ModelRoute, PricingConfig, StorageConfig
from gateway.costing import EventPricer
from gateway.estimate import count_prompt, count_tokens
from gateway.providers.base import ProviderConfig
from gateway.providers.demo import answer_for
from gateway.providers.openai import request_text
from gateway.server import GatewayServer, uvicorn_config
from governance.config import AlertsConfig, AnomalyConfig, BudgetConfig, GovernanceConfig
from governance.scope import Selector
from storage.duckdb_sink import DuckDBSink
from storage.ingest import UsageIngestor

DEMO_MODELS = {  # model -> (demo provider, price book provider it is priced as)
    "gpt-4o-mini": ("demo-openai", "openai"),
    "gpt-4o": ("demo-openai", "openai"),
    "qwen-plus": ("demo-dashscope", "dashscope"),
    "qwen-max": ("demo-dashscope", "dashscope"),
    "deepseek-chat": ("demo-deepseek", "deepseek"),
    "moonshot-v1-8k": ("demo-moonshot", "moonshot"),
}
# tenant -> (share of traffic, {feature: weight}, {model: weight})
TENANTS: dict[str, tuple[float, dict[str, float], dict[str, float]]] = {
    "acme": (0.34, {"support-chat": 0.7, "search": 0.3}, {"qwen-plus": 0.5, "gpt-4o-mini": 0.4, "gpt-4o": 0.1}),
    "globex": (0.25, {"search": 0.6, "summarize": 0.4}, {"deepseek-chat": 0.6, "gpt-4o-mini": 0.35, "gpt-4o": 0.05}),
    "initech": (0.2, {"summarize": 0.6, "support-chat": 0.4}, {"moonshot-v1-8k": 0.5, "qwen-max": 0.2,
                                                                "qwen-plus": 0.3}),
    "umbrella": (0.13, {"translate": 0.8, "support-chat": 0.2}, {"qwen-plus": 0.6, "deepseek-chat": 0.4}),
    "hooli": (0.08, {"support-chat": 1.0}, {"gpt-4o": 0.3, "gpt-4o-mini": 0.7}),
}  # fmt: skip
BASE_RATE = 720.0  # requests per hour at a profile of 1
DIURNAL = (0.9, 1.2, 1.4, 1.5, 1.4, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6,
           0.7, 0.9, 1.1, 1.2, 1.1, 0.9, 0.7, 0.5, 0.4, 0.35, 0.5, 0.7)  # fmt: skip  # by UTC hour
WEEKDAY = (1.0, 1.05, 1.05, 1.0, 0.95, 0.55, 0.5)
ERROR_SHARE = 0.03
SPIKE_TENANT = "globex"
HISTORY_TASK = "meterway-demo-history"

SYSTEM = "You are the support assistant of an online store. Answer briefly and politely."
QUESTIONS = (
    "How do I reset my password? The reset email never arrived.",
    "Our invoice shows two charges for March. Which one is the real one?",
    "Is there a way to export all of last month's orders as a spreadsheet?",
    "我的订单显示已发货，但物流信息三天没有更新，怎么办？",
)
PASSAGES = (
    "Returns: unused items can be returned within 30 days of delivery for a full refund of the item price.",
    "Shipping costs are refunded only when the item arrived damaged or was not what the customer ordered.",
    "Refunds are paid to the original payment method; banks usually show them within five business days.",
    "Items bought on sale can be exchanged for another size or colour but are not refunded in cash.",
    "Warranty claims need the order number and a photo of the defect; replacements ship within a week.",
)
NOTES = (
    "Maria opened with the billing export: the CSV format is agreed, rounding of CNY amounts still needs review.",
    "Support reported that tickets about late invoices fell by a third since the reminder emails started.",
    "Tom asked whether the nightly reconciliation job could run at 02:00 so finance has reports by 08:00.",
    "The team agreed to ship the export on Friday and to revisit the job schedule next sprint.",
    "Open risks: the provider's price change in May and the missing FX rate for SGD.",
)
CHINESE = ("会议改到周四下午。", "请带上更新后的预算数字。", "合同草稿需要法务部门再看一遍。", "下周一之前请回复确认。")
CLAUSES = (
    "The Supplier shall deliver the Services in accordance with the service levels in Schedule 2.",
    "Fees are invoiced monthly in arrears and payable within thirty (30) days of the invoice date.",
    "Either party may terminate this Agreement for material breach not cured within thirty (30) days of notice.",
    "The Supplier shall process Customer Data only in the agreed region and only on documented instructions.",
    "Each party's aggregate liability is limited to the fees paid in the twelve (12) months before the claim.",
    "The Supplier shall notify the Customer of any security incident without undue delay and within 48 hours.",
)


DEMO_ANOMALY_CHECK = 10  # seconds between anomaly checks: the spike shows within seconds, not the default 5 minutes


def demo_config(data: Path, port: int, host: str = "127.0.0.1", pricing: PricingConfig | None = None) -> Config:
    cfg = Config(pricing=pricing or PricingConfig(), storage=StorageConfig(path=data))
    cfg.server.host, cfg.server.port = host, port
    for provider, price_as in sorted(set(DEMO_MODELS.values())):
        cfg.providers[provider] = ProviderConfig(provider, "demo", "http://demo.invalid/v1", price_as=price_as)
    cfg.models = [ModelRoute(model, provider) for model, (provider, _) in DEMO_MODELS.items()]
    cfg.models.append(ModelRoute("demo", "demo-openai", "gpt-4o-mini"))
    cfg.governance = GovernanceConfig(budgets=(
        BudgetConfig("globex-daily", Decimal(5), "USD", "day", Selector(tenant=SPIKE_TENANT), (Decimal("0.8"),)),
        BudgetConfig("acme-monthly", Decimal(2000), "CNY", "month", Selector(tenant="acme"), (Decimal("0.8"),)),
        BudgetConfig("all-monthly", Decimal(1500), "USD", "month", Selector(), (Decimal("0.8"), Decimal(1))),
    ), alerts=AlertsConfig(anomaly=AnomalyConfig(interval_seconds=DEMO_ANOMALY_CHECK)))  # fmt: skip
    return cfg


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def profile(at: datetime) -> float:
    """Traffic at `at` relative to BASE_RATE: the hour of day, the weekday, and that day's own mood."""
    day = random.Random(at.strftime("demo-%Y-%m-%d")).uniform(0.85, 1.15)
    return DIURNAL[at.hour] * WEEKDAY[at.weekday()] * day


@dataclass(slots=True)
class DemoRequest:
    tenant: str
    feature: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def build_request(rng: random.Random, tenant: str | None = None, spike: bool = False) -> DemoRequest:
    """One realistic request: a tenant, one of its features and models, and a prompt that fits the feature."""
    if tenant is None:
        tenant = rng.choices(list(TENANTS), [t[0] for t in TENANTS.values()])[0]
    _, features, models = TENANTS[tenant]
    feature = "summarize" if spike else _pick(rng, features)
    model = "gpt-4o" if spike else _pick(rng, models)
    if spike:
        clauses = [f"{i}. {rng.choice(CLAUSES)}" for i in range(1, rng.randint(300, 380))]
        messages = [{"role": "user", "content": "Summarize the key obligations in this supplier agreement:\n\n"
                     + "\n".join(clauses)}]  # fmt: skip
    elif feature == "support-chat":
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": rng.choice(QUESTIONS)}]
    elif feature == "search":
        passages = "\n\n".join(f"Passage {i + 1}: {p}" for i, p in enumerate(rng.sample(PASSAGES, rng.randint(2, 5))))
        messages = [{"role": "user", "content": "Answer using only the passages below.\n\n" + passages * rng.randint(
            2, 8) + "\n\nQuestion: can I get my money back for an item I do not want any more?"}]  # fmt: skip
    elif feature == "summarize":
        notes = " ".join(rng.choice(NOTES) for _ in range(rng.randint(8, 40)))
        messages = [{"role": "user", "content": "Summarize these meeting notes in three bullet points:\n\n" + notes}]
    else:
        text = "".join(rng.choice(CHINESE) for _ in range(rng.randint(1, 6)))
        messages = [{"role": "user", "content": "Translate into English:\n\n" + text}]
    body = {"model": model, "messages": messages, "max_tokens": 400, "stream": rng.random() < 0.5}
    headers = {"x-tenant-id": tenant, "x-feature": feature, "x-user-id": f"{tenant}-u{rng.randint(1, 25)}"}
    if not spike and rng.random() < ERROR_SHARE:
        headers["x-demo-error"] = rng.choice(("429", "500", "503"))
    return DemoRequest(tenant, feature, body, headers)


async def send(client: httpx.AsyncClient, req: DemoRequest) -> None:
    with contextlib.suppress(httpx.HTTPError):
        if req.body["stream"]:
            async with client.stream("POST", "/v1/chat/completions", json=req.body, headers=req.headers) as r:
                async for _ in r.aiter_raw():
                    pass
        else:
            await client.post("/v1/chat/completions", json=req.body, headers=req.headers)


async def burst(base_url: str, count: int, rng: random.Random, *, concurrency: int = 8, spike: bool = False) -> int:
    """Send `count` requests as fast as `concurrency` allows (the spike; tests); returns how many were sent."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def one() -> None:
            async with gate:
                await send(client, build_request(rng, SPIKE_TENANT if spike else None, spike))

        await asyncio.gather(*(one() for _ in range(count)))
    return count


async def paced(base_url: str, rng: random.Random, total: int = 0) -> int:
    """Live traffic at the history's rate for the current hour; `total` 0 means until cancelled."""
    sent = 0
    running: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        try:
            while total == 0 or sent < total:
                rate = BASE_RATE * profile(datetime.now(UTC)) / 3600
                await asyncio.sleep(rng.expovariate(rate))
                task = asyncio.create_task(send(client, build_request(rng)))
                running.add(task)
                task.add_done_callback(running.discard)
                sent += 1
            await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
    return sent


# -- history -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """A request of the live traffic as the upstream counts it, reused for history."""

    model: str
    feature: str
    stream: bool
    input_tokens: int
    output_tokens: int


def samples(rng: random.Random, per_tenant: int = 40) -> dict[str, list[Sample]]:
    """Per tenant, requests built like the live ones and counted like the demo upstream counts them."""
    out: dict[str, list[Sample]] = {}
    for tenant in TENANTS:
        found = []
        for _ in range(per_tenant):
            req = build_request(rng, tenant)
            prompt = request_text(req.body)
            output = min(count_tokens(answer_for(prompt)), req.body["max_tokens"])
            found.append(Sample(req.body["model"], req.feature, req.body["stream"],
                                count_prompt(prompt, req.body), output))  # fmt: skip
        out[tenant] = found
    return out


def history_records(start: datetime, end: datetime, pool: dict[str, list[Sample]]) -> Iterator[dict[str, Any]]:
    """Usage records for every request in [start, end), deterministic per hour (same hour, same requests)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    tenants, shares = list(TENANTS), [t[0] for t in TENANTS.values()]
    while hour < end:
        rng = random.Random(hour.strftime("demo-%Y%m%d%H"))
        weights = [s * rng.uniform(0.8, 1.25) for s in shares]
        for i in range(round(BASE_RATE * profile(hour) * rng.uniform(0.9, 1.1))):
            ts = hour + timedelta(seconds=rng.uniform(0, 3600))
            tenant = rng.choices(tenants, weights)[0]
            s = rng.choice(pool[tenant])
            failed = rng.random() < ERROR_SHARE
            if not start <= ts < end:
                continue
            duration = 250 + s.output_tokens * rng.uniform(8, 20) + s.input_tokens * 0.02
            yield {
                "request_id": f"demo-history-{hour:%Y%m%d%H}-{i:05d}", "ts": ts.isoformat(),
                "provider": DEMO_MODELS[s.model][0], "model": s.model, "endpoint": "chat.completions",
                "tenant_id": tenant, "feature": s.feature, "user_id": f"{tenant}-u{rng.randint(1, 25)}",
                "stream": s.stream, "status_code": rng.choice((429, 500, 503)) if failed else 200,
                "error_type": "upstream_error" if failed else None,
                "input_tokens": 0 if failed else s.input_tokens, "output_tokens": 0 if failed else s.output_tokens,
                "duration_ms": round(duration * (0.2 if failed else 1), 1),
                "ttft_ms": round(rng.uniform(150, 600), 1) if s.stream and not failed else None,
            }  # fmt: skip
        hour += timedelta(hours=1)


def backfill(
    sink: DuckDBSink, pricer: EventPricer, price_as: dict[str, str], days: int, now: datetime,
    stop: threading.Event | None = None, chunk: int = 20_000,
) -> int:  # fmt: skip
    """Store `days` days of history up to `now` (after the newest stored event); returns how many were stored."""
    newest = sink.query("SELECT max(ts) FROM llm_usage_events")[0][0]
    start = now - timedelta(days=days)
    if newest is not None:
        start = max(start, newest + timedelta(microseconds=1))
    ingestor = UsageIngestor(pricer, price_as, not_before=sink.watermark)
    stored, batch = 0, []
    records = history_records(start, now, samples(random.Random(1)))
    for number, record in enumerate(records):
        batch.append((number, record))
        if len(batch) >= chunk:
            stored += sink.load_events(ingestor.build(batch, now).events)
            batch = []
            if stop is not None and stop.is_set():
                return stored
    if batch:
        stored += sink.load_events(ingestor.build(batch, now).events)
    return stored


# -- running ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class DemoOptions:
    history_days: int = 8
    spike_after: float = 30.0
    spike_requests: int = 80
    requests: int = 0  # live requests before the generator stops; 0: until Ctrl-C


class DemoServer(GatewayServer):
    """The gateway server that starts the demo's traffic once serving and stops it before shutting down."""

    def __init__(self, config: Config, options: DemoOptions) -> None:
        server_config = uvicorn_config(config)
        super().__init__(server_config)
        self.gateway = cast(MeterwayApp, server_config.app).gateway
        self.demo_config = config
        self.options = options
        self.stopping = threading.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        port = self.servers[0].sockets[0].getsockname()[1]
        base = f"http://{self.demo_config.server.host}:{port}"
        print(banner(base, self.demo_config, self.options), flush=True)
        gw = self.gateway
        price_as = {name: p.pricing_provider for name, p in self.demo_config.providers.items()}
        opts = self.options
        self.tasks = [
            asyncio.create_task(self._history(gw.sink, gw.pricer, price_as), name=HISTORY_TASK),
            asyncio.create_task(paced(base, random.Random(), opts.requests)),
            asyncio.create_task(self._spike(base)),
        ]

    async def _history(self, sink: DuckDBSink, pricer: EventPricer, price_as: dict[str, str]) -> None:
        days = self.options.history_days
        if days > 0:
            stored = await asyncio.to_thread(backfill, sink, pricer, price_as, days, datetime.now(UTC), self.stopping)
            print(f"history: {stored:,} past requests of the last {days} days stored", flush=True)

    async def _spike(self, base: str) -> None:
        await asyncio.sleep(self.options.spike_after)
        print(f"spike: tenant {SPIKE_TENANT!r} sends {self.options.spike_requests} long contract summaries to "
              "gpt-4o; watch the Anomalies section", flush=True)  # fmt: skip
        await burst(base, self.options.spike_requests, random.Random(), spike=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stopping.set()  # the history thread stops after its current chunk; it is waited for, not cancelled
        for task in self.tasks:
            if task.get_name() != HISTORY_TASK:
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await super().shutdown(sockets)


def banner(base: str, cfg: Config, options: DemoOptions) -> str:
    body = '{"model": "qwen-plus", "messages": [{"role": "user", "content": "How do I reset my password?"}]}'
    return (
        f"Meterway demo is running at {base}\n"
        f"  dashboard:  {base}/dashboard\n"
        f"  metrics:    {base}/metrics\n"
        f"  query API:  {base}/admin/summary\n"
        f"  events:     {cfg.storage.path}\n"
        "Try it:\n"
        f"  curl -s {base}/v1/chat/completions -H 'content-type: application/json' -H 'x-tenant-id: me' \\\n"
        f"    -d '{body}'\n"
        f'  python -c \'from openai import OpenAI; print(OpenAI(base_url="{base}/v1", api_key="demo")'
        '.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], '
        'extra_headers={"x-tenant-id": "me"}).choices[0].message.content)\'\n'
        f"Loading {options.history_days} days of history; live traffic until Ctrl-C; a spend spike from "
        f"{SPIKE_TENANT!r} after {options.spike_after:g} s."
    )


def run_demo(args: argparse.Namespace) -> int:
    cfg = demo_config(Path(args.data).resolve(), args.port, args.host)
    options = DemoOptions(history_days=args.history_days, spike_after=args.spike_after, requests=args.requests)
    DemoServer(cfg, options).run()
    print("demo stopped", flush=True)
    return 0
