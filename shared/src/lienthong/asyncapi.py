"""A service's AsyncAPI document, as integrators read it: what `faststream docs gen` makes from the code, with each
batch subscriber's payload shown per record (FastStream shows the list the handler takes; a record is one item)."""

from __future__ import annotations

from typing import Any

import yaml
from faststream import FastStream

BATCH_PAYLOAD = ":Message:Payload"


def document(app: FastStream) -> dict[str, Any]:
    doc = yaml.safe_load(app.schema.to_specification().to_yaml())
    schemas = doc.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        if name.endswith(BATCH_PAYLOAD) and schema.get("type") == "array" and "items" in schema:
            schemas[name] = {**schema["items"], "title": schema["title"],
                             "description": "One record's value (consumed in batches)."}
    return doc


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=True, allow_unicode=True)
