"""Normalized token usage: the one shape every provider's report is turned into.

Provider meters build a `Usage` from whatever their wire format reports; pricing and the event
read only these fields. The rules (what counts as input, where cache and reasoning tokens go)
are SPEC.md's "Usage normalization".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    """Token counts of one request, normalized.

    `cached_input_tokens` and `cache_write_tokens` are parts of `input_tokens`;
    `reasoning_tokens` is a part of `output_tokens`. `cache_write_5m_tokens` and
    `cache_write_1h_tokens` split `cache_write_tokens` by TTL where the provider reports it
    (Anthropic), so the book can price them apart.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def clamp_parts(self) -> bool:
        """Cut parts reported larger than their whole down to it; True when something was cut.

        Providers now and then report more cached (or cache-write) tokens than input tokens, or more
        reasoning than output. Priced as reported, the uncached input would be negative and the cached
        part overcharged; a part can be at most its whole, so the cache reads come first, then the
        writes (the 1h ones before the 5m ones), and the request is kept with its usage made consistent.
        """
        before = (self.cached_input_tokens, self.cache_write_tokens, self.reasoning_tokens)
        self.cached_input_tokens = min(self.cached_input_tokens, self.input_tokens)
        self.cache_write_tokens = min(self.cache_write_tokens, self.input_tokens - self.cached_input_tokens)
        self.cache_write_1h_tokens = min(self.cache_write_1h_tokens, self.cache_write_tokens)
        self.cache_write_5m_tokens = min(
            self.cache_write_5m_tokens, self.cache_write_tokens - self.cache_write_1h_tokens
        )
        self.reasoning_tokens = min(self.reasoning_tokens, self.output_tokens)
        return before != (self.cached_input_tokens, self.cache_write_tokens, self.reasoning_tokens)

    def add_hidden_reasoning(self, reported_total: int | None) -> None:
        """Fold a total above input + output (hidden thinking) into output and reasoning."""
        if reported_total is None:
            return
        gap = reported_total - self.input_tokens - self.output_tokens
        if gap > 0:
            self.output_tokens += gap
            self.reasoning_tokens += gap


def as_int(value: object) -> int:
    """A provider's count as an int; anything missing or malformed counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if value > 0 else 0
    if isinstance(value, float):
        return int(value) if value > 0 else 0
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    return 0
