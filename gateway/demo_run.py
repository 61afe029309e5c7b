"""`meterway demo`: the gateway over the simulated upstream, with generated traffic.

Several tenants and features call models of Chinese and international providers (priced in CNY
and USD by the shipped book), streaming and not, with some upstream errors and, after a while,
a spend spike from one tenant. It prints where to look and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
from pathlib import Path

import httpx

from gateway.config import Config, ModelRoute, PricingConfig, StorageConfig
from gateway.providers.base import ProviderConfig
from gateway.server import GatewayServer, uvicorn_config

DEMO_MODELS = {  # model -> (demo provider, price book provider it is priced as)
    "gpt-4o-mini": ("demo-openai", "openai"),
    "gpt-4o": ("demo-openai", "openai"),
    "qwen-plus": ("demo-dashscope", "dashscope"),
    "qwen-max": ("demo-dashscope", "dashscope"),
    "deepseek-chat": ("demo-deepseek", "deepseek"),
    "moonshot-v1-8k": ("demo-moonshot", "moonshot"),
}
TENANTS = (("acme", 5), ("globex", 3), ("initech", 2), ("umbrella", 1))
FEATURES = ("chat", "search", "summarize", "translate")


def demo_config(data: Path, port: int, host: str = "127.0.0.1", pricing: PricingConfig | None = None) -> Config:
    cfg = Config(pricing=pricing or PricingConfig(), storage=StorageConfig(path=data))
    cfg.server.host, cfg.server.port = host, port
    for provider, price_as in set(DEMO_MODELS.values()):
        cfg.providers[provider] = ProviderConfig(provider, "demo", "http://demo.invalid/v1", price_as=price_as)
    cfg.models = [ModelRoute(model, provider) for model, (provider, _) in DEMO_MODELS.items()]
    cfg.models.append(ModelRoute("demo", "demo-openai", "gpt-4o-mini"))
    return cfg


async def generate(base_url: str, total: int, rng: random.Random, spike_after: int = 120) -> int:
    """Send demo traffic; returns how many requests were sent. `total` 0 means until cancelled."""
    sent = 0
    tenants = [t for t, weight in TENANTS for _ in range(weight)]
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        while total == 0 or sent < total:
            spike = sent >= spike_after and sent % 200 < 60
            tenant = "globex" if spike else rng.choice(tenants)
            model = "gpt-4o" if spike else rng.choice(list(DEMO_MODELS))
            headers = {"x-tenant-id": tenant, "x-feature": rng.choice(FEATURES), "x-user-id": f"u{rng.randint(1, 40)}"}
            if rng.random() < 0.04:
                headers["x-demo-error"] = rng.choice(("429", "500", "503"))
            prompt = "Explain metering. " * rng.randint(2, 400 if spike else 40)
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 80,
                    "stream": rng.random() < 0.5}  # fmt: skip
            with contextlib.suppress(httpx.HTTPError):
                if body["stream"]:
                    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                        async for _ in r.aiter_raw():
                            pass
                else:
                    await client.post("/v1/chat/completions", json=body, headers=headers)
            sent += 1
            await asyncio.sleep(rng.uniform(0.01, 0.08))
    return sent


async def _main(cfg: Config, total: int) -> None:
    server = GatewayServer(uvicorn_config(cfg))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            return
        await asyncio.sleep(0.05)
    base = f"http://{cfg.server.host}:{cfg.server.port}"
    print(
        f"Meterway demo is running.\n"
        f"  dashboard:  {base}/dashboard\n"
        f"  metrics:    {base}/metrics\n"
        f"  events:     {cfg.storage.path}\n"
        f"  try:        curl -s {base}/v1/chat/completions -H 'content-type: application/json' "
        f'-H \'x-tenant-id: me\' -d \'{{"model":"qwen-plus","messages":[{{"role":"user","content":"hi"}}]}}\'\n'
        f"  or:         OPENAI_BASE_URL={base}/v1 OPENAI_API_KEY=demo python your_app.py\n"
        "Generating traffic; Ctrl-C to stop.",
        flush=True,
    )
    traffic = asyncio.create_task(generate(base, total, random.Random(7)))
    await asyncio.wait({serving, traffic}, return_when=asyncio.FIRST_COMPLETED)
    if traffic.done() and not serving.done():
        print(f"demo traffic done: {traffic.result()} requests; still serving, Ctrl-C to stop", flush=True)
    await serving
    traffic.cancel()


def run_demo(args: argparse.Namespace) -> int:
    cfg = demo_config(Path(args.data).resolve(), args.port, args.host)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(cfg, args.requests))
    print("demo stopped", file=sys.stderr)
    return 0
