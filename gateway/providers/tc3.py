"""Tencent Cloud API v3 request signing (TC3-HMAC-SHA256), as Tencent Cloud documents it.

    canonical request -> string to sign (with the credential scope `date/service/tc3_request`)
    -> signature with a key derived from the secret key, date and service -> `Authorization`

Only `content-type` and `host` are signed, the documented minimum; so the gateway may add other
`X-TC-*` headers without invalidating a signature.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def authorization(
    secret_id: str,
    secret_key: str,
    *,
    service: str,
    host: str,
    timestamp: int,
    payload: bytes,
    content_type: str = "application/json",
    method: str = "POST",
    query: str = "",
) -> str:
    """The `Authorization` header value for one request. POST requests sign an empty query."""
    canonical_headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    canonical_request = "\n".join(
        [
            method.upper(),
            "/",
            "" if method.upper() == "POST" else query,
            canonical_headers,
            SIGNED_HEADERS,
            _sha256_hex(payload),
        ]
    )
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{_sha256_hex(canonical_request.encode('utf-8'))}"
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
