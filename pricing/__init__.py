"""Meterway's price book and pricing engine; it stands alone and imports nothing from the gateway.

Data flows one way: `book` loads YAML (via `yamlio` and `parse`), validates it (`checks`) and indexes the
dated `entry` values; `calculator` prices one request's token counts against an entry, exactly in Decimal;
`pricer` is what the gateway holds (current book, tenant discounts, reloads, quotes); `cli` is
`meterway prices check|list|quote`.
"""
