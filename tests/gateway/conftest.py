from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.gateway import LiveGateway


@pytest.fixture
def client(gw: LiveGateway) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the module's gateway (`gw`), with a client key of its own."""
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client-key", max_retries=0) as sdk:
        yield sdk
