"""The `azure` kind: deployment URLs, `api-version`, the `api-key` header, OpenAI's meters."""

from __future__ import annotations

import orjson

from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import provider, run, sse

AZURE = KINDS["azure"]
BASE = "https://res.openai.azure.com"


def test_openai_route_goes_to_the_deployment_with_api_version() -> None:
    prov = provider("azure", base_url=BASE, api_key="az-key", deployments={"prod-4o": "gpt-4o"})
    call = AZURE.shape_openai(prov, "chat/completions", {"model": "gpt-4o", "messages": []}, "gpt-4o")
    assert call.path == "openai/deployments/prod-4o/chat/completions"
    assert (call.model_requested, call.model_upstream) == ("gpt-4o", "gpt-4o")
    up = AZURE.upstream_request(call, "POST", "", [("Authorization", "Bearer gw"), ("api-key", "client")], b"{}")
    assert up.url == f"{BASE}/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    assert [(k, v) for k, v in up.headers if k.lower() in ("api-key", "authorization")] == [("api-key", "az-key")]


def test_a_prefixed_or_aliased_model_reaches_azure_as_the_deployment_name() -> None:
    prov = provider("azure", base_url=BASE, deployments={"mydep": "gpt-4o"})
    body = {"model": "azure/mydep", "messages": []}
    call = AZURE.shape_openai(prov, "chat/completions", body, "mydep")
    assert call.path == "openai/deployments/mydep/chat/completions" and call.body_changed
    assert body["model"] == "mydep" and (call.model_requested, call.model_upstream) == ("azure/mydep", "gpt-4o")


def test_raw_route_keeps_the_clients_api_version_and_maps_the_deployment() -> None:
    prov = provider("azure", base_url=BASE, api_version="2025-01-01", deployments={"gpt-4o": "gpt-4o-2024-11-20"})
    call = AZURE.shape_raw(prov, "POST", "openai/deployments/gpt-4o/chat/completions", {"messages": []})
    assert (call.endpoint, call.model_requested, call.model_upstream) == (
        "chat.completions",
        "gpt-4o",
        "gpt-4o-2024-11-20",
    )
    up = AZURE.upstream_request(call, "POST", "api-version=2024-12-01-preview", [("api-key", "client")], b"{}")
    assert up.url.endswith("?api-version=2024-12-01-preview")
    assert up.headers == [("api-key", "client")]  # no key configured: the client's passes through
    up = AZURE.upstream_request(call, "POST", "x=1", [], b"{}")
    assert up.url.endswith("?x=1&api-version=2025-01-01")


def test_injected_usage_chunk_is_stripped() -> None:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    call = AZURE.shape_openai(provider("azure", base_url=BASE), "chat/completions", body, "gpt-4o")
    assert call.strip_usage_chunk and orjson.loads(orjson.dumps(call.body))["stream_options"]["include_usage"]
    filter_results = {"choices": [], "model": "", "prompt_filter_results": [{"prompt_index": 0}]}
    text = {"model": "gpt-4o-2024-11-20", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    usage = {"model": "gpt-4o-2024-11-20", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    kept = sse(filter_results, text)
    meter = AZURE.new_meter(call, 200, "text/event-stream")
    relayed, report = run(meter, kept + sse(usage) + b"data: [DONE]\n\n", "7")
    assert relayed == kept + b"data: [DONE]\n\n"
    assert report.usage is not None and report.usage.total_tokens == 4
    assert report.model == "gpt-4o-2024-11-20"
    assert meter.output_text() == "Hi"
