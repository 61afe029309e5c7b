"""Gateway keys: only a salted hash is stored; expiry, revocation, allowed providers and model globs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from governance.keys import (
    GatewayKeys,
    JsonFileKeyStore,
    KeyRecord,
    MemoryKeyStore,
    bearer_token,
    check_access,
)

NOW = datetime(2025, 6, 11, 12, tzinfo=UTC)


def keys(store: MemoryKeyStore | JsonFileKeyStore | None = None, now: datetime = NOW) -> GatewayKeys:
    return GatewayKeys(store or MemoryKeyStore(), clock=lambda: now)


def test_a_new_key_authenticates_and_decides_the_tenant() -> None:
    gk = keys()
    record, raw = gk.create("acme", name="ci", user="u1", feature="search")
    assert raw.startswith("mw-") and len(raw) > 40
    found = gk.authenticate(raw)
    assert isinstance(found, KeyRecord)
    assert (found.id, found.tenant, found.user, found.feature) == (record.id, "acme", "u1", "search")
    assert record.hint == "mw-…" + raw[-4:]
    assert gk.authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) == "unknown"
    assert gk.authenticate(None) == "missing" and gk.authenticate("") == "missing"
    assert gk.authenticate("sk-something") == "malformed"
    _, other = gk.create("beta")
    assert other != raw and isinstance(gk.authenticate(other), KeyRecord)


def test_only_a_salted_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    gk = keys(JsonFileKeyStore(path))
    record, raw = gk.create("acme")
    text = path.read_text()
    assert raw not in text and raw[3:] not in text
    assert record.digest in text and "digest" not in record.public()
    assert path.stat().st_mode & 0o777 == 0o600
    doc = json.loads(text)
    assert len(bytes.fromhex(doc["salt"])) == 32
    # the same key under another store's salt gives another digest: a copied digest is useless elsewhere
    assert keys().digest(raw) != record.digest


def test_expiry_and_revocation(tmp_path: Path) -> None:
    store = JsonFileKeyStore(tmp_path / "keys.json")
    record, raw = keys(store).create("acme", expires_at=NOW + timedelta(hours=1))
    assert isinstance(keys(store, NOW + timedelta(minutes=59)).authenticate(raw), KeyRecord)
    assert keys(store, NOW + timedelta(hours=1)).authenticate(raw) == "expired"
    revoked = keys(store).revoke(record.id)
    assert revoked is not None and revoked.revoked and revoked.revoked_at == NOW
    assert keys(store).authenticate(raw) == "revoked"
    assert keys(store).revoke("key_nope") is None
    with pytest.raises(ValueError, match="timezone-aware"):
        keys(store).create("acme", expires_at=datetime(2030, 1, 1))


def test_another_process_sees_new_and_revoked_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    server = keys(JsonFileKeyStore(path))
    cli = keys(JsonFileKeyStore(path))  # e.g. `meterway keys create` in another process
    record, raw = cli.create("acme")
    assert isinstance(server.authenticate(raw), KeyRecord)
    cli.revoke(record.id)
    assert server.authenticate(raw) == "revoked"
    _, second = server.create("beta")
    assert sorted(r.tenant for r in cli.list()) == ["acme", "beta"]
    assert isinstance(cli.authenticate(second), KeyRecord)


def test_allowed_providers_and_model_globs() -> None:
    gk = keys()
    record, _ = gk.create("acme", allowed_models=["gpt-4o*", "qwen-plus"], allowed_providers=["openai", "dashscope"])
    assert check_access(record, "openai", "gpt-4o-mini") is None
    assert check_access(record, "dashscope", "qwen-plus") is None
    assert check_access(record, "dashscope", "qwen-max") == f"gateway key {record.id} may not use model 'qwen-max'"
    assert check_access(record, "anthropic", "gpt-4o") == f"gateway key {record.id} may not use provider 'anthropic'"
    open_record, _ = gk.create("acme")
    assert check_access(open_record, "anything", "any-model") is None


def test_a_key_limited_to_a_provider_that_is_not_configured_is_refused() -> None:
    gk = GatewayKeys(MemoryKeyStore(), clock=lambda: NOW, providers=("openai", "dashscope"))
    with pytest.raises(ValueError) as refused:
        gk.create("acme", allowed_providers=["openai", "dashscop", "azur"])
    assert str(refused.value) == (
        "unknown provider(s) 'dashscop', 'azur' in allowed_providers: the configured providers are openai, dashscope"
    )
    assert gk.list() == []
    record, _ = gk.create("acme", allowed_providers=["dashscope"])
    assert record.allowed_providers == ("dashscope",)


def test_public_view_and_bearer_parsing() -> None:
    later = NOW + timedelta(days=30)
    record, raw = keys().create("acme", name="n", expires_at=later)
    public = record.public()
    assert raw not in json.dumps(public) and public["expires_at"] == later.isoformat()
    with pytest.raises(ValueError, match="is already past: the key could never be used"):
        keys().create("acme", expires_at=NOW)
    assert raw not in repr(record)
    assert bearer_token(f"Bearer {raw}") == raw and bearer_token(f"bearer  {raw} ") == raw
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer ") is None
