"""Gateway keys: issued per tenant, stored only as a salted hash, checked on every request.

A key is `mw-` followed by 32 random bytes in URL-safe base64. `GatewayKeys.create` returns it once,
alongside its `KeyRecord`; from then on only its HMAC-SHA256 under the store's secret salt is kept,
so a leaked store file does not give working keys. `authenticate(raw_key)` hashes what the client
sent, looks the digest up and compares it in constant time, then checks revocation and expiry;
`check_access(record, provider, model)` applies the key's allowed providers and model globs.
A record carries an `id` (what events, logs and the admin API show) and a `hint` (`mw-…Xy3q`).

Stores: `MemoryKeyStore` and `JsonFileKeyStore`. The JSON file is rewritten atomically under an
advisory lock, re-read when another process (`meterway keys create|revoke`) has changed it, and
kept readable by its owner only.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, Protocol

from governance.files import write_atomically

PREFIX = "mw-"
AuthFailure = Literal["missing", "malformed", "unknown", "revoked", "expired"]
FAILURE_MESSAGES: dict[str, str] = {
    "missing": "a gateway key is required",
    "malformed": "the gateway key is not in the expected format",
    "unknown": "the gateway key is not valid",
    "revoked": "the gateway key has been revoked",
    "expired": "the gateway key has expired",
}


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    digest: str  # HMAC-SHA256(salt, key), hex
    hint: str
    created_at: datetime
    name: str | None = None
    user: str | None = None
    feature: str | None = None
    expires_at: datetime | None = None
    allowed_models: tuple[str, ...] = ()  # globs; empty = any
    allowed_providers: tuple[str, ...] = ()  # empty = any
    revoked: bool = False
    revoked_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        """The record for listings and the admin API: everything except the digest."""
        out = {k: v for k, v in asdict(self).items() if k != "digest"}
        for k in ("created_at", "expires_at", "revoked_at"):
            out[k] = None if out[k] is None else out[k].isoformat()
        out["allowed_models"] = list(self.allowed_models)
        out["allowed_providers"] = list(self.allowed_providers)
        return out


class KeyStore(Protocol):
    @property
    def salt(self) -> bytes: ...
    def add(self, record: KeyRecord) -> None: ...
    def update(self, record: KeyRecord) -> None: ...
    def get(self, key_id: str) -> KeyRecord | None: ...
    def find(self, digest: str) -> KeyRecord | None: ...
    def all(self) -> list[KeyRecord]: ...


class MemoryKeyStore:
    def __init__(self, salt: bytes | None = None) -> None:
        self._salt = salt or secrets.token_bytes(32)
        self._by_id: dict[str, KeyRecord] = {}
        self._by_digest: dict[str, str] = {}

    @property
    def salt(self) -> bytes:
        return self._salt

    def add(self, record: KeyRecord) -> None:
        if record.id in self._by_id:
            raise ValueError(f"key id {record.id!r} exists already")
        self._by_id[record.id] = record
        self._by_digest[record.digest] = record.id

    def update(self, record: KeyRecord) -> None:
        if record.id not in self._by_id:
            raise KeyError(record.id)
        self._by_id[record.id] = record
        self._by_digest[record.digest] = record.id

    def get(self, key_id: str) -> KeyRecord | None:
        return self._by_id.get(key_id)

    def find(self, digest: str) -> KeyRecord | None:
        key_id = self._by_digest.get(digest)
        return None if key_id is None else self._by_id.get(key_id)

    def all(self) -> list[KeyRecord]:
        return sorted(self._by_id.values(), key=lambda r: (r.created_at, r.id))


class JsonFileKeyStore:
    """Keys in one JSON file (`{"version", "salt", "keys"}`), shared safely with other processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._memory = MemoryKeyStore()  # a new store's salt, unless the file exists already
        self._seen: tuple[int, int, int] | None = None
        with self._locked():
            if self.path.exists():
                self._reload(force=True)
            else:
                self._write()

    @property
    def salt(self) -> bytes:
        return self._memory.salt

    def add(self, record: KeyRecord) -> None:
        with self._locked():
            self._reload(force=True)
            self._memory.add(record)
            self._write()

    def update(self, record: KeyRecord) -> None:
        with self._locked():
            self._reload(force=True)
            self._memory.update(record)
            self._write()

    def get(self, key_id: str) -> KeyRecord | None:
        self._reload()
        return self._memory.get(key_id)

    def find(self, digest: str) -> KeyRecord | None:
        self._reload()
        return self._memory.find(digest)

    def all(self) -> list[KeyRecord]:
        self._reload()
        return self._memory.all()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _reload(self, force: bool = False) -> None:
        """Re-read the file if it changed since it was last read (one stat otherwise)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen and not force:
            return
        doc = json.loads(self.path.read_text(encoding="utf-8"))
        memory = MemoryKeyStore(bytes.fromhex(doc["salt"]))
        for item in doc.get("keys", []):
            memory.add(_record_from_json(item))
        self._memory, self._seen = memory, seen

    def _write(self) -> None:
        doc = {
            "version": 1,
            "salt": self._memory.salt.hex(),
            "keys": [_record_to_json(r) for r in self._memory.all()],
        }
        write_atomically(self.path, json.dumps(doc, indent=1).encode())
        st = self.path.stat()
        self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)


def _record_to_json(record: KeyRecord) -> dict[str, Any]:
    out = record.public()
    out["digest"] = record.digest
    return out


def _record_from_json(item: dict[str, Any]) -> KeyRecord:
    def when(name: str) -> datetime | None:
        value = item.get(name)
        return None if value is None else datetime.fromisoformat(value)

    created = when("created_at")
    if created is None:
        raise ValueError(f"key {item.get('id')!r}: created_at missing")
    return KeyRecord(
        id=item["id"],
        tenant=item["tenant"],
        digest=item["digest"],
        hint=item["hint"],
        created_at=created,
        name=item.get("name"),
        user=item.get("user"),
        feature=item.get("feature"),
        expires_at=when("expires_at"),
        allowed_models=tuple(item.get("allowed_models", ())),
        allowed_providers=tuple(item.get("allowed_providers", ())),
        revoked=bool(item.get("revoked", False)),
        revoked_at=when("revoked_at"),
    )


def _now() -> datetime:
    return datetime.now(UTC)


class GatewayKeys:
    """Issue, list, revoke and check gateway keys held in a `KeyStore`."""

    def __init__(
        self, store: KeyStore, *, clock: Callable[[], datetime] = _now, providers: Collection[str] = ()
    ) -> None:
        """`providers`: the configured provider names a key may be limited to (empty: any name is taken)."""
        self.store = store
        self._clock = clock
        self.providers = tuple(providers)

    def digest(self, raw_key: str) -> str:
        return hmac.new(self.store.salt, raw_key.encode(), hashlib.sha256).hexdigest()

    def create(
        self,
        tenant: str,
        *,
        name: str | None = None,
        user: str | None = None,
        feature: str | None = None,
        expires_at: datetime | None = None,
        allowed_models: Sequence[str] = (),
        allowed_providers: Sequence[str] = (),
    ) -> tuple[KeyRecord, str]:
        """A new key for `tenant`: its record, and the key itself, which is never available again."""
        if not tenant:
            raise ValueError("a key needs a tenant")
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        if expires_at is not None and expires_at <= self._clock():
            raise ValueError(f"expires_at {expires_at.isoformat()} is already past: the key could never be used")
        if self.providers and (unknown := [p for p in allowed_providers if p not in self.providers]):
            # a misspelt name would make a key that can call nothing
            raise ValueError(
                f"unknown provider(s) {', '.join(map(repr, unknown))} in allowed_providers: "
                f"the configured providers are {', '.join(self.providers)}"
            )
        raw = PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            tenant=tenant,
            digest=self.digest(raw),
            hint=f"{PREFIX}…{raw[-4:]}",
            created_at=self._clock(),
            name=name,
            user=user,
            feature=feature,
            expires_at=expires_at,
            allowed_models=tuple(allowed_models),
            allowed_providers=tuple(allowed_providers),
        )
        self.store.add(record)
        return record, raw

    def list(self) -> list[KeyRecord]:
        return self.store.all()

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Mark a key revoked (kept for the audit trail); None if there is no such key."""
        record = self.store.get(key_id)
        if record is None:
            return None
        if not record.revoked:
            record = replace(record, revoked=True, revoked_at=self._clock())
            self.store.update(record)
        return record

    def authenticate(self, raw_key: str | None) -> KeyRecord | AuthFailure:
        """The record of a valid key, or why the key is refused."""
        if not raw_key:
            return "missing"
        if not raw_key.startswith(PREFIX) or len(raw_key) > 256:
            return "malformed"
        record = self.identify(raw_key)
        if record is None:
            return "unknown"
        if record.revoked:
            return "revoked"
        if record.expires_at is not None and self._clock() >= record.expires_at:
            return "expired"
        return record

    def identify(self, raw_key: str) -> KeyRecord | None:
        """The record of a key that exists, valid or not (a revoked or expired key's id and tenant, for the
        event of the request it was refused)."""
        digest = self.digest(raw_key)
        record = self.store.find(digest)
        return record if record is not None and hmac.compare_digest(record.digest, digest) else None


def check_access(record: KeyRecord, provider: str, model: str) -> str | None:
    """Why `record` may not call `model` on `provider`, or None when it may."""
    if record.allowed_providers and provider not in record.allowed_providers:
        return f"gateway key {record.id} may not use provider {provider!r}"
    if record.allowed_models and not any(fnmatchcase(model, glob) for glob in record.allowed_models):
        return f"gateway key {record.id} may not use model {model!r}"
    return None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
