"""How the MongoDB adapter lays out rows and dossiers, without a server: what it stores reads back as the
projector wrote it, documents stored before packing still read, and the fields queries use stay top-level."""

from __future__ import annotations

import random

from pymongo import AsyncMongoClient

from stats.projection import apply
from stats.projector import Row
from stats.store import ProjectionStore, _days, _dossier_from, _expanded, _row_from
from tests.unit.stats.test_rollups import dossier_events

STORE = ProjectionStore(AsyncMongoClient(connect=False)["layout"])  # the codec needs no server


def a_dossier() -> dict:
    rng = random.Random(7)
    while True:  # the first generated dossier with at least one step
        doc = None
        for event in dossier_events(rng, 1):
            doc = apply(doc, event) or doc
        if doc is not None and doc["steps"]:
            return doc


def test_a_packed_dossier_reads_back_whole_with_its_query_fields_on_top():
    doc = a_dossier()
    stored = STORE.encode_dossier(doc)
    assert {"units", "steps", "timeline"}.isdisjoint(stored)
    for field in ("_id", "seq", "closed_day", "due_date", "current_unit", "receiving_unit", "procedure", "status"):
        assert stored.get(field) == doc.get(field)
    assert _dossier_from(stored) == doc


def test_a_dossier_stored_before_packing_reads_as_it_is():
    doc = a_dossier()
    assert _dossier_from(dict(doc)) == doc


def test_a_packed_row_reads_back_as_the_projector_wrote_it():
    row = Row("2025-07|HACTHANH|p3", "2025-07", "HACTHANH", 3, pos=41,
              cells={"d05.recv.received_online": 3, "d05.step.resolved_on_time": 1, "d31.any.due_passed": 2})
    stored = STORE.encode_row(row)
    assert set(stored) == {"_id", "month", "slot", "partition", "pos", "cells"}
    back = _row_from(stored)
    assert (back.id, back.month, back.slot, back.partition, back.pos, back.cells) == \
           (row.id, row.month, row.slot, row.partition, row.pos, row.cells)
    assert back.stored_pos == 41


def test_a_row_stored_nested_before_packing_gives_the_same_cells_and_days():
    cells = {"d05.recv.received_online": 3, "d05.step.resolved_on_time": 1, "d31.any.due_passed": 2}
    nested = {"_id": "2025-07|HACTHANH|p3", "month": "2025-07", "slot": "HACTHANH", "partition": 3, "pos": 41,
              "d05": {"recv": {"received_online": 3}, "step": {"resolved_on_time": 1}},
              "d31": {"any": {"due_passed": 2}}}
    packed = STORE.encode_row(Row(nested["_id"], "2025-07", "HACTHANH", 3, pos=41, cells=cells))
    assert _row_from(nested).cells == cells
    assert _expanded(nested) == _expanded(packed) == nested
    assert _days(_expanded(packed)) == [
        {"day": "2025-07-05", "unit": "HACTHANH", "recv": {"received_online": 3}, "step": {"resolved_on_time": 1}},
        {"day": "2025-07-31", "unit": "HACTHANH", "any": {"due_passed": 2}},
    ]
