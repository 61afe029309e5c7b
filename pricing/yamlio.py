"""Reading price-book YAML without ever going through float.

PyYAML turns `0.1` into a binary float, which is not the number in the file. This loader builds YAML floats
as `Decimal` from their source text, keeps timestamps as the text they were written as (the book parses
and validates them itself), and refuses duplicate keys in a mapping instead of silently keeping the last.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import yaml


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping names the same key twice."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal | str:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        return text
    # Infinities and NaN are not prices; hand them on as text so validation names them.
    return value if value.is_finite() else text


def _construct_timestamp_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[Any, Any]:
    assert isinstance(node, yaml.MappingNode)
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise DuplicateKeyError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


class DecimalLoader(yaml.SafeLoader):
    """SafeLoader with Decimal floats, textual timestamps and no duplicate keys."""


DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
DecimalLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_text)
DecimalLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml(text: str) -> Any:
    """Parse one YAML document with Decimal amounts."""
    return yaml.load(text, Loader=DecimalLoader)
