"""The `hunyuan` kind: TC3-HMAC-SHA256 signing, PascalCase usage, errors inside HTTP 200."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers import tc3
from gateway.providers.base import GatewayError
from gateway.providers.hunyuan import HunyuanKind
from gateway.providers.registry import KINDS
from tests.gateway.providers.helpers import metered, provider, raw_call, run, sse

HUNYUAN = KINDS["hunyuan"]
BASE = "https://hunyuan.tencentcloudapi.com"


def test_tc3_signature_matches_the_documented_example() -> None:
    # Tencent Cloud's "Signature v3" worked example: CVM DescribeInstances in ap-guangzhou.
    auth = tc3.authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        timestamp=1551113065,
        payload=b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}',
        content_type="application/json; charset=utf-8",
    )
    assert auth == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


def test_configured_secret_signs_and_replaces_the_clients_signature() -> None:
    kind = HunyuanKind(clock=lambda: 1551113065.7)
    prov = provider("hunyuan", base_url=BASE, secret_id="AKIDtest", secret_key="secret", region="ap-guangzhou")
    body = {"Model": "hunyuan-turbos-latest", "Messages": [{"Role": "user", "Content": "hi"}], "Stream": True}
    call = kind.shape_raw(prov, "POST", "", body)
    assert (call.endpoint, call.model_upstream, call.stream) == (
        "hunyuan.ChatCompletions",
        "hunyuan-turbos-latest",
        True,
    )
    raw = orjson.dumps(body)
    client = [("Authorization", "TC3-HMAC-SHA256 client"), ("X-TC-Timestamp", "1"), ("Content-Type", "text/plain")]
    up = kind.upstream_request(call, "POST", "", client, raw)
    assert up.url == BASE and up.body == raw
    expected = tc3.authorization(
        "AKIDtest", "secret", service="hunyuan", host="hunyuan.tencentcloudapi.com", timestamp=1551113065, payload=raw
    )
    assert up.headers == [
        ("Authorization", expected),
        ("Content-Type", "application/json"),
        ("X-TC-Timestamp", "1551113065"),
        ("X-TC-Action", "ChatCompletions"),
        ("X-TC-Version", "2023-09-01"),
        ("X-TC-Region", "ap-guangzhou"),
    ]
    assert "/2019-02-25/hunyuan/tc3_request, SignedHeaders=content-type;host, Signature=" in expected


def test_without_secret_the_clients_signature_passes_through() -> None:
    client = [
        ("Authorization", "TC3-HMAC-SHA256 Credential=AKIDclient/2024-01-01/hunyuan/tc3_request, ..."),
        ("X-TC-Action", "ChatCompletions"),
        ("X-TC-Timestamp", "1704067200"),
        ("X-TC-Version", "2023-09-01"),
        ("Content-Type", "application/json"),
    ]
    call = HUNYUAN.shape_raw(provider("hunyuan", base_url=BASE), "POST", "", {"Model": "m"}, client)
    up = HUNYUAN.upstream_request(call, "POST", "", list(client), b"{}")
    assert up.headers == client


def test_response_error_inside_200() -> None:
    body = {
        "Response": {
            "Error": {
                "Code": "AuthFailure.SignatureFailure",
                "Message": "The provided credentials could not be validated.",
            },
            "RequestId": "e3b0",
        }
    }
    report = metered("hunyuan", raw_call("hunyuan", "", {"Model": "m"}), orjson.dumps(body), ctype="application/json")
    assert report.error == "AuthFailure.SignatureFailure: The provided credentials could not be validated."
    assert report.usage is None


def stream_chunk(content: str, out: int, **extra: object) -> dict[str, object]:
    choice = {"FinishReason": "", "Delta": {"Role": "assistant", "Content": content}}
    return {"Choices": [choice], "Usage": {"PromptTokens": 4, "CompletionTokens": out, "TotalTokens": 4 + out}, **extra}


@pytest.mark.parametrize("split", ["whole", "3", "random"])
def test_stream_error_after_content_and_running_totals(split: str) -> None:
    wire = sse(
        stream_chunk("1", 2),
        stream_chunk("+1", 4),
        stream_chunk("", 5, ErrorMsg={"Code": 2001, "Msg": "content moderation"}),
    )
    call = raw_call("hunyuan", "", {"Model": "hunyuan-pro", "Stream": True})
    meter = HUNYUAN.new_meter(call, 200, "text/event-stream")
    relayed, report = run(meter, wire, split)
    assert relayed == wire
    assert report.error == "2001: content moderation"
    assert report.usage is not None and (report.usage.input_tokens, report.usage.output_tokens) == (4, 5)
    assert meter.output_text() == "1+1"


def test_body_without_response_wrapper() -> None:
    body = {
        "Choices": [{"Message": {"Role": "assistant", "Content": "ok"}}],
        "Usage": {"PromptTokens": 3, "CompletionTokens": 1, "TotalTokens": 4},
    }
    call = raw_call("hunyuan", "", {"Model": "m"})
    meter = HUNYUAN.new_meter(call, 200, "application/json")
    report = run(meter, orjson.dumps(body))[1]
    assert report.usage is not None and report.usage.total_tokens == 4 and report.error is None
    assert meter.output_text() == "ok"


def test_openai_route_points_to_the_openai_kind_and_error_body() -> None:
    with pytest.raises(GatewayError) as err:
        HUNYUAN.shape_openai(provider("hunyuan"), "chat/completions", {"model": "hunyuan-lite"}, "hunyuan-lite")
    assert err.value.status == 400 and "api.hunyuan.cloud.tencent.com" in err.value.message
    body = orjson.loads(HUNYUAN.error_body(404, "model_not_found", "no model"))
    assert body["Response"]["Error"] == {"Code": "model_not_found", "Message": "no model"}
    assert body["Response"]["RequestId"]
    action = raw_call("hunyuan", "", {"Model": "m"}, headers=[("x-tc-action", "GetTokenCount")])
    assert action.endpoint == "hunyuan.GetTokenCount"
    assert HUNYUAN.input_text({"Messages": [{"Role": "user", "Content": "你好"}]}) == "你好"
