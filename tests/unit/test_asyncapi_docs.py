"""The checked-in AsyncAPI documents are what `faststream docs gen` makes from the services' code today."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"


@pytest.mark.parametrize("service", ["intake", "routing", "notify", "stats"])
def test_asyncapi_document_is_current(service):
    app = importlib.import_module(f"{service}.main").asyncapi
    generated = yaml.safe_load(app.schema.to_specification().to_yaml())
    assert yaml.safe_load((DOCS / f"{service}.yaml").read_text(encoding="utf-8")) == generated, (
        f"docs/asyncapi/{service}.yaml is stale: run `make asyncapi`"
    )
