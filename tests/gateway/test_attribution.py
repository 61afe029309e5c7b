"""Attribution headers: what a request is tagged with, and the bounds on what a client can make us store."""

from __future__ import annotations

from gateway.attribution import MAX_TAGS, AttributionReader, parse_tags
from gateway.config import AttributionConfig


def test_tags_parse_and_stop_at_the_limit_across_headers() -> None:
    assert parse_tags(" team = search , env=prod,solo,=x,") == {"team": "search", "env": "prod", "solo": ""}
    reader = AttributionReader(AttributionConfig())
    many = ",".join(f"k{i}=v" for i in range(MAX_TAGS + 100)).encode()
    headers = [(b"x-meterway-tags", b"first=1"), (b"x-meterway-tags", many), (b"x-meterway-tags", b"first=2")]
    attr = reader.read(headers, None)
    assert len(attr.tags) == MAX_TAGS and attr.tags["first"] == "2" and "k0" in attr.tags and "k31" not in attr.tags
    long = reader.read([(b"x-tenant-id", b"t" * 1000), (b"x-meterway-tags", b"k=" + b"v" * 1000)], {"user": "u"})
    assert long.tenant_id == "t" * 256 and long.tags == {"k": "v" * 256} and long.user_id == "u"
