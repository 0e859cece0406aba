"""The service index (Decision 766/QĐ-TTg's five groups, 100 points), pure: each component is a rate of facts the
stats projection counts event by event, scored by a table kept as data (`STATS_INDEX_TABLE`, default
`data/index-766.json`), so a new decree is a new file, not new code.

A component's score is its points x its rate. A component with nothing to measure in the period (no payment, no
rating yet) is left out and the total is scaled to the points that were measured, so a unit is not marked down for
what it had no occasion to do; each component says whether it was measured.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stats.projection import Summary
from stats.rollups import PER_DOSSIER, Basis, work_items

# measure -> (numerator, denominator) from a period's figures and facts
MEASURES = {
    # every dossier's progress is public (tracking by code and receipt secret): counted, not assumed elsewhere
    "public_progress": lambda s, f: (s.received, s.received),
    "on_time": lambda s, f: (s.resolved_on_time, s.resolved),
    "online_filing": lambda s, f: (s.received_online, s.received),
    "online_payment": lambda s, f: (f["paid_online"], f["paid_online"] + f["paid_counter"]),
    "satisfied": lambda s, f: (f["rated_very_satisfied"] + f["rated_satisfied"],
                               f["rated_very_satisfied"] + f["rated_satisfied"] + f["rated_unsatisfied"]),
    "digitised": lambda s, f: (f["digitised"], s.received),
    "electronic_result": lambda s, f: (f["result_electronic"], s.resolved),
}




class _Scored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key: str
    name: str
    points: float = Field(gt=0)


class Component(_Scored):
    measure: str

    @model_validator(mode="after")
    def _known(self) -> Component:
        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r} (known: {', '.join(MEASURES)})")
        return self


class Group(_Scored):
    components: tuple[Component, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _adds_up(self) -> Group:
        if abs(sum(c.points for c in self.components) - self.points) > 1e-9:
            raise ValueError(f"group {self.key}: its components' points do not add up to {self.points}")
        return self


class ScoringTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    version: str
    source: str
    groups: tuple[Group, ...] = Field(min_length=1)

    @property
    def points(self) -> float:
        return sum(g.points for g in self.groups)

    def component(self, key: str) -> Component | None:
        return next((c for g in self.groups for c in g.components if c.key == key), None)


@cache
def scoring_table(path: str | None = None) -> ScoringTable:
    text = Path(path).read_text(encoding="utf-8") if path else \
        files("stats").joinpath("data", "index-766.json").read_text(encoding="utf-8")
    return ScoringTable.model_validate(json.loads(text))


def score(summary: Summary, facts: dict[str, int], table: ScoringTable) -> dict[str, Any]:
    """The index for one unit (or level, or the province) over a period, opened into its groups and components."""
    groups, scored, measured = [], 0.0, 0.0
    for group in table.groups:
        components = []
        for c in group.components:
            numerator, denominator = MEASURES[c.measure](summary, facts)
            rate = numerator / denominator if denominator else None
            points = c.points * rate if rate is not None else None
            if rate is not None:
                scored += points
                measured += c.points
            components.append({"key": c.key, "name": c.name, "max_points": c.points, "numerator": numerator,
                               "denominator": denominator, "rate": _round(rate), "points": _round(points)})
        got = [c["points"] for c in components if c["points"] is not None]
        groups.append({"key": group.key, "name": group.name, "max_points": group.points,
                       "points": _round(sum(got)) if got else None, "components": components})
    total = scored * table.points / measured if measured else None
    return {"table": table.version, "total": _round(total), "max_points": table.points,
            "measured_points": measured, "groups": groups}


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def dossiers_behind(docs: Iterable[dict[str, Any]], measure: str, basis: Basis, in_scope: Callable[[str], bool],
                    start: date, end: date) -> list[tuple[dict[str, Any], bool]]:
    """The dossiers in a component's denominator for a scope and period, each with whether it meets the numerator:
    `basis` and `in_scope` as the figures count them (the province or a level on `recv`, a unit on `any`)."""
    day_field, counts, meets = PER_DOSSIER[measure]
    lo, hi = start.isoformat(), end.isoformat()
    out = []
    for doc in docs:
        for unit, item in work_items(doc, basis):
            day = item.get(day_field)
            if in_scope(unit) and day is not None and lo <= day <= hi and counts(item):
                out.append((doc, meets(item)))
                break  # once per dossier, whichever of its units is in scope
    return out
