"""How the MongoDB adapter lays out rows and dossiers, without a server: what it stores reads back as the
projector wrote it, a reader of one slot gets that slot's days, and the fields queries use stay top-level."""

from __future__ import annotations

import random
import zlib

from lienthong.catalogue import catalogue
from stats import rollups
from stats.projection import apply
from stats.projector import Row, row_group
from stats.store import _days, _dossier_from, _packed_dossier, _packed_row, _row_from, _slots
from tests.unit.stats.test_rollups import dossier_events



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
    stored = _packed_dossier(doc)
    assert {"units", "steps", "timeline"}.isdisjoint(stored)
    for field in ("_id", "seq", "closed_day", "due_date", "current_unit", "receiving_unit", "procedure", "status"):
        assert stored.get(field) == doc.get(field)
    assert _dossier_from(stored) == doc


def test_a_dossier_stored_compressed_by_an_earlier_release_still_reads_back():
    doc = a_dossier()
    stored = _packed_dossier(doc)
    earlier = {**stored, "packed": zlib.compress(stored["packed"], 1)}
    assert _dossier_from(earlier) == doc


def test_slots_share_a_few_rows_and_each_reads_back_alone():
    groups = {row_group(s) for s in ("*", "@commune", "@province", "#HT-KS")}
    assert groups == {"totals"}
    assert row_group(rollups.UNIT_MONTHS) == rollups.UNIT_MONTHS
    assert row_group("HACTHANH").startswith("u") and row_group("HACTHANH#").startswith("b")
    cells = {"HACTHANH": {"d05.recv.received_online": 3, "d05.step.resolved_on_time": 1, "d31.any.due_passed": 2}}
    other = next(u for u in catalogue().units if u != "HACTHANH" and row_group(u) == row_group("HACTHANH"))
    cells[other] = {"d06.recv.received_postal": 5}  # a neighbour in the same row
    row = Row(f"2025-07|{row_group('HACTHANH')}|p3", "2025-07", row_group("HACTHANH"), 3, pos=41, cells=cells)
    stored = _packed_row(row)
    assert set(stored) == {"_id", "month", "group", "partition", "pos", "cells"}
    back = _row_from(stored)
    assert (back.id, back.month, back.group, back.partition, back.pos, back.cells) == \
           (row.id, row.month, row.group, row.partition, row.pos, row.cells)
    assert back.stored_pos == 41
    days = _days("2025-07", "HACTHANH", _slots(stored)["HACTHANH"])
    assert {"day": "2025-07-05", "unit": "HACTHANH", "recv": {"received_online": 3},
            "step": {"resolved_on_time": 1}} in days
    assert {"day": "2025-07-31", "unit": "HACTHANH", "any": {"due_passed": 2}} in days
    assert all(d["unit"] == "HACTHANH" for d in days)
