"""The framing decoders under the native meters: JSON values in any chunking, SSE found by sniffing."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.providers.frames import Frames
from gateway.providers.sse import JSONValuesDecoder

TRICKY = st.text(alphabet=st.sampled_from(list('ab{}[]",\\:\n é')), max_size=12)
OBJECTS = st.lists(
    st.dictionaries(
        st.sampled_from(["a", "b", "{", "]"]),
        st.one_of(TRICKY, st.integers(-(2**53), 2**53), st.lists(TRICKY, max_size=3)),
    ),
    min_size=1,
    max_size=4,
)


def decode(body: bytes, cuts: list[int]) -> list[Any]:
    decoder = JSONValuesDecoder()
    values: list[bytes] = []
    start = 0
    for cut in [*sorted({c % (len(body) + 1) for c in cuts}), len(body)]:
        values += decoder.feed(body[start:cut])
        start = cut
    values += decoder.finish()
    return [orjson.loads(v) for v in values]


@settings(max_examples=150, deadline=None)
@given(
    objs=OBJECTS,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    shape=st.sampled_from(range(3)),
)
def test_json_values_survive_any_chunking(objs: list[dict[str, Any]], cuts: list[int], shape: int) -> None:
    if shape == 0:  # a streamed array, pretty-printed, as Gemini sends without alt=sse
        body = b"[" + b"\r\n,".join(orjson.dumps(o, option=orjson.OPT_INDENT_2) for o in objs) + b"]"
    elif shape == 1:  # NDJSON
        body = b"".join(orjson.dumps(o) + b"\n" for o in objs)
    else:  # one document
        body = b"  " + orjson.dumps(objs[0])
        objs = objs[:1]
    assert decode(body, cuts) == objs


def test_cut_off_object_is_dropped() -> None:
    assert decode(b'[{"a": 1}, {"b": "unfinish', [5]) == [{"a": 1}]


def frames(body: bytes, size: int) -> list[tuple[str, bytes]]:
    decoder = Frames()
    out = []
    for i in range(0, len(body), size):
        out += decoder.feed(body[i : i + size])
    return out + decoder.finish()


def test_frames_sniff_sse_and_json() -> None:
    sse = b'id:1\r\nevent:result\r\n:HTTP_STATUS/200\r\ndata:{"x":1}\r\n\r\ndata: {"x":2}'
    assert frames(sse, 1) == [("result", b'{"x":1}'), ("", b'{"x":2}')]
    assert frames(b' \n[{"x":1},{"x":2}]', 2) == [("", b'{"x":1}'), ("", b'{"x":2}')]
    assert frames(b"   ", 1) == []
    assert frames(b'\xef\xbb\xbf{"x": 1}', 3) == [("", b'{"x": 1}')]
