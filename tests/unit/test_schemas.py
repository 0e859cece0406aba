"""A contract cannot change without a new version: the checked-in schemas must equal what the code exports."""

from __future__ import annotations

from pathlib import Path

from lienthong.contracts.export import schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_checked_in_schemas_match_the_code():
    exported = schemas()
    changed = [name for name, text in exported.items() if (SCHEMAS / name).exists()
               and (SCHEMAS / name).read_text(encoding="utf-8") != text]
    missing = [name for name in exported if not (SCHEMAS / name).exists()]
    assert not changed, (
        f"contract changed without a new version: {changed}. Published versions are immutable: add a new "
        "event type with the next version (…v2) and keep the old one, then run `make schemas`."
    )
    assert not missing, f"new event types without a checked-in schema: {missing}; run `make schemas`"


def test_no_schema_file_without_a_contract():
    orphans = sorted({p.name for p in SCHEMAS.glob("*.json")} - set(schemas()))
    assert not orphans, f"schema files whose event type no longer exists in the code: {orphans}"
