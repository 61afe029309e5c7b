"""The `azure` kind: Azure OpenAI's deployment URLs.

Requests go to `{base_url}/openai/deployments/{deployment}/{op}?api-version=...` with the key in an
`api-key` header. Bodies, streams and usage are OpenAI's, so the openai kind's shaping and meters do
the rest. The deployment is what the URL names; the provider's `deployments` map turns it into the
model name that pricing looks up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import parse_qsl, quote

from gateway.providers import common, openai
from gateway.providers.base import JSON, Call, GatewayError, Meter, ProviderConfig, UpstreamRequest, sse_data

DEFAULT_API_VERSION = "2024-10-21"
_DEPLOYMENT_PATH = re.compile(r"^openai/deployments/([^/]+)/(.+)$")


def deployment_for(provider: ProviderConfig, model: str) -> str:
    """The deployment serving `model`: named directly, or the one mapped to that model."""
    if model in provider.deployments:
        return model
    return next((dep for dep, mapped in provider.deployments.items() if mapped == model), model)


def with_api_version(query: str, version: str) -> str:
    """The client's query, with `api-version` added unless it already has one."""
    if any(k == "api-version" for k, _ in parse_qsl(query, keep_blank_values=True)):
        return query
    param = "api-version=" + quote(version, safe="")
    return f"{query}&{param}" if query else param


class AzureKind:
    name: ClassVar[str] = "azure"

    def shape_openai(self, provider: ProviderConfig, op: str, body: JSON, model_upstream: str) -> Call:
        if openai.openai_endpoint(op) is None:
            raise GatewayError(404, "not_found", f"unknown endpoint /v1/{op}")
        deployment = deployment_for(provider, model_upstream)
        call = openai.shape_call(provider, f"openai/deployments/{deployment}/{op}", body)
        if model_upstream != call.model_requested:  # an alias or a `provider/model` name: Azure sees its own
            body["model"] = model_upstream
            call.body_changed = True
        call.model_upstream = provider.deployments.get(deployment, model_upstream)
        return call

    def shape_raw(
        self,
        provider: ProviderConfig,
        method: str,
        path: str,
        body: JSON | None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Call:
        call = openai.shape_call(provider, path, body)
        match = _DEPLOYMENT_PATH.match(path.strip("/"))
        if match:
            deployment = match.group(1)
            call.model_requested = deployment
            call.model_upstream = provider.deployments.get(deployment, deployment)
        return call

    def upstream_request(
        self, call: Call, method: str, query: str, headers: list[tuple[str, str]], raw_body: bytes
    ) -> UpstreamRequest:
        hdrs = common.with_credential(
            call.provider, headers, "api-key", call.provider.api_key or None, ("authorization",)
        )
        if _DEPLOYMENT_PATH.match(call.path.strip("/")):
            query = with_api_version(query, call.provider.api_version or DEFAULT_API_VERSION)
        return common.build(call, method, query, hdrs, raw_body)

    def new_meter(self, call: Call, status: int, content_type: str) -> Meter:
        return openai.new_meter(call, status, content_type)

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return openai.error_body(status, code, message)

    def stream_error(self, code: str, message: str) -> bytes:
        return sse_data(self.error_body(502, code, message))

    def input_text(self, body: JSON | None) -> str:
        return openai.request_text(body)
