"""Every recorded provider response, metered by every kind that serves it, in any chunking.

Each fixture is one real response (tests/fixtures/wire/README.md). The kind shapes the call from the
recorded URL and request, its meter reads the recorded body fed whole, in 7-byte pieces and at
random boundaries; the client must get the body byte for byte and the usage must be SPEC.md's.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import provider, run

WIRE = Path(__file__).parents[2] / "fixtures" / "wire"
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
)
SPLITS = ("whole", "7", "random")


def load(name: str) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads((WIRE / name).read_text(encoding="utf-8"))
    return fixture


def url_path(fixture: dict[str, Any]) -> str:
    url: str = fixture["url"]
    return urlsplit(url.split(" ")[0]).path.lstrip("/")


def kinds_for(fixture: dict[str, Any]) -> list[str]:
    """Which kinds serve a fixture: OpenAI-compatible APIs are the `openai` kind, and also the
    native kind of their provider where that kind routes its OpenAI-compatible paths."""
    name, path = fixture["provider"], url_path(fixture)
    if name == "dashscope":
        return ["openai", "dashscope"] if path.startswith("compatible-mode/") else ["dashscope"]
    if name == "ollama":
        return ["openai", "ollama"] if path.startswith("v1/") else ["ollama"]
    if name.startswith("azure"):
        return ["azure"]
    if name in ("anthropic", "gemini", "hunyuan"):
        return [name]
    return ["openai"]  # openai, deepseek, groq, moonshot, openrouter


def request_headers(fixture: dict[str, Any]) -> list[tuple[str, str]]:
    url = fixture["url"]
    if "Action=" in url:
        return [("X-TC-Action", url.split("Action=", 1)[1].split(",", 1)[0])]
    return []


CASES = [
    pytest.param(name, kind, split, id=f"{name.removesuffix('.json')}-{kind}-{split}")
    for name in sorted(p.name for p in WIRE.glob("*.json"))
    for kind in kinds_for(load(name))
    for split in SPLITS
]


def test_every_fixture_is_covered() -> None:
    assert len({c.values[0] for c in CASES}) == len(list(WIRE.glob("*.json"))) >= 23


@pytest.mark.parametrize(("name", "kind_name", "split"), CASES)
def test_fixture_is_relayed_and_metered(name: str, kind_name: str, split: str) -> None:
    fixture = load(name)
    kind = KINDS[kind_name]
    request = fixture["request"]
    body = dict(request) if isinstance(request, dict) else None
    call = kind.shape_raw(provider(kind_name), fixture["method"], url_path(fixture), body, request_headers(fixture))
    assert call.endpoint == fixture["api"]
    if request is not None:
        assert call.stream == fixture["stream"]

    meter = kind.new_meter(call, fixture["status"], fixture["headers"].get("content-type", ""))
    wire = fixture["body"].encode("utf-8")
    relayed, report = run(meter, wire, split, seed=zlib.crc32(name.encode()))

    assert relayed == wire
    expected = fixture["expected_event"]
    assert (fixture["status"] >= 400 or report.error is not None) == expected["error"], report.error
    if expected["usage_source"] == "provider":
        assert report.usage is not None
        got = {f: getattr(report.usage, f) for f in TOKEN_FIELDS}
        assert got == {f: expected.get(f, 0) for f in TOKEN_FIELDS}
    else:
        assert report.usage is None


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("anthropic_messages_stream_extended_thinking.json", "claude-sonnet-4-20250514"),
        ("gemini_stream_cumulative_usage_thinking.json", "gemini-2.5-flash"),
        ("gemini_generate_content_cached_content.json", "gemini-2.5-flash"),
        ("groq_stream_usage_in_x_groq_compound.json", "groq/compound"),
        ("deepseek_chat_nonstream_cache_hit.json", "deepseek-v4-flash"),
        ("openai_responses_stream_flex_reasoning.json", "gpt-5-2025-08-07"),
    ],
)
def test_fixture_reports_the_upstream_model(name: str, model: str) -> None:
    fixture = load(name)
    kind_name = kinds_for(fixture)[0]
    kind = KINDS[kind_name]
    call = kind.shape_raw(provider(kind_name), "POST", url_path(fixture), fixture["request"])
    meter = kind.new_meter(call, fixture["status"], fixture["headers"].get("content-type", ""))
    assert run(meter, fixture["body"].encode(), "7")[1].model == model


@pytest.mark.parametrize("name", sorted(p.name for p in WIRE.glob("*.json")))
def test_fixture_output_text_is_read(name: str) -> None:
    fixture = load(name)
    if fixture["status"] >= 400 or fixture["api"] == "embeddings":
        return
    kind_name = kinds_for(fixture)[-1]
    kind = KINDS[kind_name]
    call = kind.shape_raw(provider(kind_name), "POST", url_path(fixture), fixture["request"], request_headers(fixture))
    meter = kind.new_meter(call, fixture["status"], fixture["headers"].get("content-type", ""))
    run(meter, fixture["body"].encode(), "random")
    assert meter.output_text().strip()
