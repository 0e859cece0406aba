"""The checked-in AsyncAPI documents are what the services' code makes today, show every channel's real payloads,
and agree with the topology (topics' payloads in `topics.py`, writers and readers in the client registry)."""

from __future__ import annotations

import importlib
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml

from lienthong import asyncapi
from lienthong.identity import registry
from lienthong.topics import OUTCOMES_PATTERN, OUTCOMES_PREFIX, WORK_PREFIX, topic_named, topology, topology_chart

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "asyncapi"
SERVICES = ["intake", "routing", "notify", "stats"]


def document(service: str) -> dict:
    return asyncapi.document(importlib.import_module(f"{service}.main").bootstrap().asyncapi())


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    """(action, topic address, payload schema with $refs resolved one level) of every operation."""
    out = []
    for op in doc["operations"].values():
        channel = doc["channels"][urllib.parse.unquote(op["channel"]["$ref"].split("/")[-1])]
        message_ref = next(iter(channel["messages"].values()))["$ref"].split("/")[-1]
        payload = doc["components"]["messages"][urllib.parse.unquote(message_ref)]["payload"]
        while "$ref" in payload and set(payload) == {"$ref"}:
            payload = doc["components"]["schemas"][payload["$ref"].split("/")[-1]]
        out.append((op["action"], channel["address"], payload))
    return out


def family(address: str) -> str:
    """A topic as the registry names it: agencies' own topics by family."""
    if address == OUTCOMES_PATTERN:
        return OUTCOMES_PREFIX + "*"
    for prefix in (WORK_PREFIX, OUTCOMES_PREFIX):
        if address.startswith(prefix) and not address.endswith(".dlq"):
            return prefix + "*"
    return address


def event_types(doc: dict, payload: dict) -> set[str]:
    refs = [p["$ref"] for p in payload.get("oneOf", [])] or ([payload["$ref"]] if "$ref" in payload else [])
    return {doc["components"]["schemas"][r.split("/")[-1]]["properties"]["type"]["const"]
            for r in refs if "type" in doc["components"]["schemas"][r.split("/")[-1]].get("properties", {})}


@pytest.mark.parametrize("service", SERVICES)
def test_asyncapi_document_is_current(service):
    checked_in = yaml.safe_load((DOCS / f"{service}.yaml").read_text(encoding="utf-8"))
    assert checked_in == document(service), f"docs/asyncapi/{service}.yaml is stale: run `make asyncapi`"


@pytest.mark.parametrize("service", SERVICES)
def test_every_channel_shows_a_real_payload(service):
    doc = document(service)
    assert "EmptyPayload" not in doc["components"].get("schemas", {})
    for action, address, payload in operations(doc):
        assert payload.get("type") not in (None, "null") or "oneOf" in payload or "$ref" in payload, (
            f"{service} {action} {address}: empty payload {payload}")
        if action == "receive" or not address.endswith(".dlq"):
            assert payload.get("type") != "array", f"{service} {address}: a record is one value, not a list"


@pytest.mark.parametrize("service", SERVICES)
def test_operations_are_the_topology(service):
    """What a service's document says it receives and sends is what the registry (and so the ACLs) lets it, and
    the events on each channel are among those its topic carries."""
    doc = document(service)
    client = registry().get(service)
    received = {family(a) for action, a, _ in operations(doc) if action == "receive"}
    sent = {family(a) for action, a, _ in operations(doc) if action == "send"}
    assert received == set(client.consumes)
    assert sent == set(client.produces) - set(getattr(client, "purges", ()))
    # A record it cannot take goes to its topic's DLQ: the ACLs must let it write there, or the partition stalls.
    parks_to = {topic_named(t.replace("*", "x")).dlq for t in client.consumes if topic_named(t.replace("*", "x")).has_dlq}
    assert parks_to <= set(client.produces), f"{service} may not write {parks_to - set(client.produces)}"
    for _, address, payload in operations(doc):
        if address.endswith(".dlq"):
            continue
        topic = topic_named(address.replace(OUTCOMES_PATTERN, OUTCOMES_PREFIX + "x"))
        carried = {k.EVENT_TYPE for k in topic.carries if hasattr(k, "EVENT_TYPE")}
        assert event_types(doc, payload) <= carried, f"{service} {address}"


def test_every_event_type_travels_on_some_topic():
    from lienthong.contracts import EVENT_TYPES

    carried = {k.EVENT_TYPE for edge in topology() for k in topic_named(edge.topic.replace("*", "x")).carries
               if hasattr(k, "EVENT_TYPE")}
    assert set(EVENT_TYPES) <= carried


def test_readme_chart_is_the_topology():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = readme.split("<!-- topology:start -->\n", 1)[1].split("\n<!-- topology:end -->", 1)[0]
    assert shown == topology_chart(), "README's chart differs: regenerate it from lienthong.topics.topology_chart()"
    for edge in topology():
        assert re.search(rf'\("{re.escape(edge.topic)}"\)', shown)
