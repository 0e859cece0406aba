"""HTTP edge of stats: the province's figures and the citizen's public tracking."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

import csv
import io
import time
from collections import defaultdict

from lienthong.auth import STATS_READ, require
from lienthong.tracking import TrackingSettings
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from openpyxl import Workbook

from lienthong.calendar import VN_TZ
from lienthong.catalogue import catalogue
from stats import rollups
from stats.index import ScoringTable, score, scoring_table
from stats.store import ProjectionStore

CODE_PATTERN = r"^[A-Z][A-Z0-9]{1,15}-\d{6}-\d{4,6}$"
Start = Annotated[date, Query(alias="from", description="First day, YYYY-MM-DD")]
End = Annotated[date, Query(alias="to", description="Last day, YYYY-MM-DD (inclusive)")]
UnitCode = Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9]{1,15}$", description="Receiving or competent unit")]
Level = Literal["commune", "province"] | None
Basis = Annotated[Literal["dossiers", "steps"], Query(
    description="dossiers: each dossier once (a chain counts once, as the citizen sees it); steps: each step at "
                "the unit that held it (a chain counts once per step, as units are judged)")]


def _basis(basis: str, unit: str | None) -> rollups.Basis:
    if basis == "steps":
        return "step"
    return "any" if unit is not None else "recv"


def _slot(unit: str | None, level: str | None) -> str:
    if unit is not None:
        return unit
    return rollups.level_slot(level) if level is not None else rollups.PROVINCE


def build_router(store: ProjectionStore, tracking_settings: TrackingSettings | None = None,
                 lookups_per_minute: int = 30, table: ScoringTable | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1")
    secrets = tracking_settings or TrackingSettings()
    lookups = LookupLimit(lookups_per_minute)
    table = table or scoring_table()

    async def rows_of(start: date, end: date, unit: str | None, level: str | None) -> list[dict]:
        _check_range(start, end)
        if unit is not None and unit not in catalogue().units:
            raise HTTPException(422, detail=[{"field": "unit", "type": "unknown_unit", "message": "no such unit"}])
        if unit is not None and level is not None and catalogue().units[unit].level != level:
            return []  # the unit is not of that level: nothing of it counts
        return await store.slot_rows(end.isoformat(), _slot(unit, level))

    async def figures(start: date, end: date, unit: str | None, level: str | None, basis: str) -> dict:
        rows = await rows_of(start, end, unit, level)
        return {"from": start.isoformat(), "to": end.isoformat(), "unit": unit, "level": level, "basis": basis,
                **rollups.figures(rows, _basis(basis, unit), start, end, today()).as_dict()}

    @router.get("/stats/index", dependencies=[require(STATS_READ)],
                summary="The service index (Decision 766's five groups) for a period, opened into its components")
    async def service_index(start: Start, end: End, unit: UnitCode = None, level: Level = None) -> dict:
        rows = await rows_of(start, end, unit, level)
        basis = _basis("dossiers", unit)
        return {"from": start.isoformat(), "to": end.isoformat(), "unit": unit, "level": level,
                **score(rollups.figures(rows, basis, start, end, today()), rollups.facts(rows, basis, start, end),
                        table)}

    async def rows_by_unit(start: date, end: date) -> dict[str, list[dict]]:
        """Every unit's rows for a ranking (nothing is due later than today yet)."""
        _check_range(start, end)
        by_unit: dict[str, list[dict]] = defaultdict(list)
        for row in await store.ranking_rows(start, min(end, today())):
            by_unit[row["unit"]].append(row)
        return by_unit

    @router.get("/stats/index/units", dependencies=[require(STATS_READ)],
                summary="Every unit's service index for a period, best first")
    async def index_ranking(start: Start, end: End) -> list[dict]:
        units = catalogue().units
        ranked = []
        for unit, rows in (await rows_by_unit(start, end)).items():
            summary = rollups.figures(rows, "any", start, end, today())
            if unit in units and summary.received + summary.resolved:
                ranked.append({"unit": unit, "name": units[unit].name, "level": units[unit].level,
                               **score(summary, rollups.facts(rows, "any", start, end), table)})
        return sorted(ranked, key=lambda r: (r["total"] is None, -(r["total"] or 0), r["unit"]))

    @router.get("/stats/summary", dependencies=[require(STATS_READ)], summary="Figures for a period, as the province reports them")
    async def summary(start: Start, end: End, unit: UnitCode = None, level: Level = None,
                      basis: Basis = "dossiers") -> dict:
        return await figures(start, end, unit, level, basis)

    @router.get("/stats/summary.csv", dependencies=[require(STATS_READ)], summary="The same figures as CSV (one header row, one value row)")
    async def summary_csv(start: Start, end: End, unit: UnitCode = None, level: Level = None,
                          basis: Basis = "dossiers") -> Response:
        row = await figures(start, end, unit, level, basis)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{_filename(row)}.csv"'})

    @router.get("/stats/summary.xlsx", dependencies=[require(STATS_READ)], summary="The same figures as an Excel sheet, for the periodic report")
    async def summary_xlsx(start: Start, end: End, unit: UnitCode = None, level: Level = None,
                           basis: Basis = "dossiers") -> Response:
        row = await figures(start, end, unit, level, basis)
        book = Workbook()
        sheet = book.active
        sheet.title = "Tong hop"
        sheet.append(list(row))
        sheet.append(list(row.values()))
        out = io.BytesIO()
        book.save(out)
        return Response(out.getvalue(),
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f'attachment; filename="{_filename(row)}.xlsx"'})

    @router.get("/stats/units", dependencies=[require(STATS_READ)], summary="Ranking of units for a period")
    async def units_ranking(
        start: Start,
        end: End,
        sort: Literal["on_time_rate", "overdue", "received"] = "on_time_rate",
        basis: Basis = "dossiers",
    ) -> list[dict]:
        kind: rollups.Basis = "step" if basis == "steps" else "any"  # a unit's own figures
        units = catalogue().units
        ranked = [{"unit": unit, "name": units[unit].name, "level": units[unit].level,
                   **rollups.figures(rows, kind, start, end, today()).as_dict()}
                  for unit, rows in (await rows_by_unit(start, end)).items() if unit in units]
        ranked = [r for r in ranked if r["received"] or r["in_progress"] or r["resolved"] or r["rejected"]
                  or r["withdrawn"]]
        if sort == "on_time_rate":  # worst first; units with nothing resolved last
            return sorted(ranked, key=lambda r: (r["on_time_rate"] is None, r["on_time_rate"] or 0, r["unit"]))
        return sorted(ranked, key=lambda r: (-r[sort], r["unit"]))

    @router.get("/stats/timeseries", dependencies=[require(STATS_READ)], summary="Figures per day, week or month")
    async def timeseries(
        start: Start,
        end: End,
        unit: UnitCode = None,
        interval: Literal["day", "week", "month"] = "day",
        basis: Basis = "dossiers",
    ) -> list[dict]:
        _check_range(start, end)
        return await timeseries_of(store, start, end, unit, interval, basis)

    @router.get("/dossiers/{code}", summary="Public tracking of one dossier (the code and the receipt's secret)",
                responses={404: {"description": "No such dossier, or not this secret: the same answer"},
                           429: {"description": "Too many lookups from this address; see Retry-After"}})
    async def tracking(request: Request, code: Annotated[str, Path(pattern=CODE_PATTERN)],
                       secret: Annotated[str | None, Query(max_length=32, description="The tracking secret "
                                                           "printed on the receipt")] = None) -> dict:
        wait = lookups.retry_after(request.client.host if request.client else "?")
        if wait:
            raise HTTPException(429, detail=[{"field": "(client)", "type": "rate_limited",
                                              "message": f"retry after {wait}s"}], headers={"Retry-After": str(wait)})
        # A wrong secret and an unknown code are one answer, and the store is read either way (no timing hint).
        doc = await store.tracking(code)
        if doc is None or not secrets.matches(code, secret):
            raise HTTPException(404, detail=[{"field": "code", "type": "not_found", "message": "no such dossier"}])
        return {
            "code": doc["_id"],
            "procedure": doc["procedure"],
            "status": doc["status"],
            "receiving_unit": doc["receiving_unit"],
            "current_unit": doc.get("current_unit"),
            "step": doc.get("step"),
            "due_date": doc["due_date"],
            "timeline": [{k: e[k] for k in ("event", "time", "unit")} for e in doc["timeline"]],
        }

    return router


async def timeseries_of(store: ProjectionStore, start: date, end: date, unit: str | None, interval: str,
                        basis: str) -> list[dict]:
    kind = _basis(basis, unit)
    daily = await store.slot_rows(end.isoformat(), _slot(unit, None))
    return [{"from": a.isoformat(), "to": b.isoformat(), **rollups.figures(daily, kind, a, b, today()).as_dict()}
            for a, b in _buckets(start, end, interval)]


class LookupLimit:
    """Public tracking lookups per client address and minute (a fixed window: cheap, and enough against walking
    the codes; the province's gateway limits in front of it as well)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.window, self.counts = -1, defaultdict(int)

    def retry_after(self, client: str) -> int:
        now = time.monotonic()
        window = int(now // 60)
        if window != self.window:
            self.window, self.counts = window, defaultdict(int)
        self.counts[client] += 1
        return 0 if self.counts[client] <= self.per_minute else int(60 - now % 60) + 1


def today() -> date:
    """The province's today: in progress and overdue are never counted as of a later day."""
    return datetime.now(VN_TZ).date()


def _filename(row: dict) -> str:
    return f"lienthong-{row['unit'] or row['level'] or 'tinh'}-{row['from']}-{row['to']}"


def _check_range(start: date, end: date) -> None:
    if end < start:
        raise HTTPException(422, detail=[{"field": "to", "type": "range", "message": "`to` is before `from`"}])
    if (end - start).days > 3660:
        raise HTTPException(422, detail=[{"field": "to", "type": "range", "message": "at most ten years"}])


def _buckets(start: date, end: date, interval: str) -> list[tuple[date, date]]:
    buckets = []
    a = start
    while a <= end:
        if interval == "day":
            b = a
        elif interval == "week":
            b = a + timedelta(days=6 - a.weekday())
        else:
            b = (a.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        buckets.append((a, min(b, end)))
        a = min(b, end) + timedelta(days=1)
    return buckets
