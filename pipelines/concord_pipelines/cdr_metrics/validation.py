"""Validate Get Metrics payloads against the JSON Schema of the version the holder served."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).parent / "schemas"
ROOTS = {version: f"ResponseMetricsListV{version}.json" for version in (2, 3, 4, 5)}


class PayloadError(ValueError):
    """The payload breaks its version's schema; `path` is the JSON path of the first problem."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@cache
def _registry() -> Registry:
    resources = [
        (p.name, Resource.from_contents(json.loads(p.read_text()), default_specification=DRAFT202012))
        for p in SCHEMA_DIR.glob("*.json")
    ]
    return Registry().with_resources(resources)


@cache
def validator(version: int) -> Draft202012Validator:
    schema = _registry().contents(ROOTS[version])
    return Draft202012Validator(schema, registry=_registry())


Schema = dict[str, Any]


def _resolve(node: Any) -> Schema | None:
    while isinstance(node, dict) and "$ref" in node:  # the schemas only use whole-file references
        node = _registry().contents(node["$ref"])
    return node if isinstance(node, dict) else None


def data_schema(version: int) -> Schema | None:
    """The schema of `data` for `version`: what the standard defines, so anything else is unknown."""
    return child_schema(_resolve(_registry().contents(ROOTS[version])), "data") if version in ROOTS else None


def child_schema(schema: Schema | None, key: str) -> Schema | None:
    """The schema of `key` under an object schema, or None when the standard does not define that key."""
    if schema is None:
        return None
    properties = schema.get("properties") or {}
    if key in properties:
        return _resolve(properties[key])
    extra = schema.get("additionalProperties")  # e.g. error counts keyed by HTTP status
    return _resolve(extra) if isinstance(extra, dict) else None


def item_schema(schema: Schema | None) -> Schema | None:
    return _resolve(schema.get("items")) if schema is not None else None


def json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_payload(payload: Any, version: int) -> None:
    """Raise PayloadError for the first problem in document order, or return quietly."""
    if version not in ROOTS:
        raise PayloadError("$", f"no schema for version {version}")
    errors = list(validator(version).iter_errors(payload))
    if errors:
        first = min(errors, key=lambda e: _document_order(payload, list(e.absolute_path)))
        raise PayloadError(json_path(first.absolute_path), _short(first.message))


def _document_order(payload: Any, path: list[str | int]) -> tuple[int, ...]:
    """Position of `path` in the payload as written (object keys in order), so the first problem wins."""
    order: list[int] = []
    node = payload
    for part in path:
        if isinstance(node, dict):
            keys = list(node)
            order.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            order.append(part)
            node = node[part]
        else:
            order.append(0)
            node = None
    return tuple(order)


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."
