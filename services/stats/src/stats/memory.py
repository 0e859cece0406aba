"""The projector's store in memory: what a rebuild folds the whole log into before one bulk load, and the fake
the service-layer tests run against. Writes are compare-and-set like the real store's."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stats.projector import DossierWrite, ProjectionConflict, Row


class MemoryStore:
    """`isolated` (tests): hands out and keeps copies, and checks every write like the real store. Not isolated
    (a rebuild, the only writer): keeps the projector's own objects, no copies, no checks."""

    def __init__(self, *, isolated: bool = True) -> None:
        self.isolated = isolated
        self.dossiers: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, Row] = {}
        self.firsts: dict[int, str] = {}
        self.marks: dict[int, int] = {}

    async def prepare(self) -> str:
        return "memory"

    async def load_dossiers(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        return {c: self.dossiers[c] for c in codes if c in self.dossiers}

    async def load_rows(self, ids: list[str]) -> list[Row]:
        if not self.isolated:
            return [self.rows[i] for i in ids if i in self.rows]
        return [replace(self.rows[i], cells=_copy(self.rows[i].cells)) for i in ids if i in self.rows]

    async def flush_marks(self, partitions: list[int]) -> dict[int, int]:
        return {p: self.marks[p] for p in partitions if p in self.marks}

    async def mark_flushing(self, marks: dict[int, tuple[str | None, int]]) -> None:
        for partition, (month, last) in marks.items():
            self.marks[partition] = max(last, self.marks.get(partition, last))
            if month is not None:
                self.firsts[partition] = min(month, self.firsts.get(partition, month))

    async def write_rows(self, rows: list[Row]) -> None:
        if not self.isolated:
            self.rows.update((row.id, row) for row in rows)
            return
        for row in rows:
            current = self.rows.get(row.id)
            if (current.pos if current else None) != row.stored_pos:
                raise ProjectionConflict(f"row {row.id} moved on")
        for row in rows:
            self.rows[row.id] = replace(row, cells=_copy(row.cells), stored_pos=row.pos)

    async def write_dossiers(self, writes: list[DossierWrite]) -> None:
        if not self.isolated:
            self.dossiers.update((w.doc["_id"], w.doc) for w in writes)
            return
        for w in writes:
            current = self.dossiers.get(w.doc["_id"])
            if (current["seq"] if current else None) != w.stored_seq:
                raise ProjectionConflict(f"dossier {w.doc['_id']} moved on")
        for w in writes:
            self.dossiers[w.doc["_id"]] = w.doc


def _copy(cells: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {slot: dict(paths) for slot, paths in cells.items()}
