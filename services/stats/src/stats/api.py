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

from lienthong.calendar import VN_TZ
from lienthong.catalogue import catalogue
from lienthong.catalogue.versions import LiveCatalogue
from stats import rollups
from stats.index import PER_DOSSIER, ScoringTable, dossiers_behind, score, scoring_table
from stats.store import ProjectionStore

CODE_PATTERN = r"^[A-Z][A-Z0-9]{1,15}-\d{6}-\d{4,6}$"
Start = Annotated[date, Query(alias="from", description="First day, YYYY-MM-DD")]
End = Annotated[date, Query(alias="to", description="Last day, YYYY-MM-DD (inclusive)")]
UnitCode = Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9]{1,15}$", description="Receiving or competent unit")]
Level = Literal["commune", "province"] | None
Format = Annotated[Literal["csv", "xlsx"], Path(description="csv, or xlsx for an Excel sheet")]
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
                 lookups_per_minute: int = 30, table: ScoringTable | None = None,
                 live: LiveCatalogue | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1")
    secrets = tracking_settings or TrackingSettings()
    lookups = LookupLimit(lookups_per_minute)
    table = table or scoring_table()
    live = live or LiveCatalogue()

    async def rows_of(start: date, end: date, unit: str | None, level: str | None) -> list[dict]:
        _check_range(start, end)
        if _units_in_scope(unit, level) == []:
            return []  # the unit is not of that level: nothing of it counts
        return await store.slot_rows(end.isoformat(), _slot(unit, level))

    def index_over(rows: list[dict], basis: rollups.Basis, start: date, end: date) -> dict:
        """The index scored from rows over [start, end]."""
        return score(rollups.figures(rows, basis, start, end, today()), rollups.facts(rows, basis, start, end), table)

    async def figures(start: date, end: date, unit: str | None, level: str | None, basis: str) -> dict:
        rows = await rows_of(start, end, unit, level)
        return {"from": start.isoformat(), "to": end.isoformat(), "unit": unit, "level": level, "basis": basis,
                **rollups.figures(rows, _basis(basis, unit), start, end, today()).as_dict()}

    @router.get("/stats/index", dependencies=[require(STATS_READ)],
                summary="The service index (Decision 766's five groups) for a period, opened into its components")
    async def service_index(start: Start, end: End, unit: UnitCode = None, level: Level = None) -> dict:
        rows = await rows_of(start, end, unit, level)
        return {"from": start.isoformat(), "to": end.isoformat(), "unit": unit, "level": level,
                **index_over(rows, _basis("dossiers", unit), start, end)}

    @router.get("/stats/index/timeseries", dependencies=[require(STATS_READ)],
                summary="The service index per month (or week, or day) of a period, each opened into its components")
    async def index_timeseries(start: Start, end: End, unit: UnitCode = None, level: Level = None,
                               interval: Literal["day", "week", "month"] = "month") -> list[dict]:
        rows = await rows_of(start, end, unit, level)
        basis = _basis("dossiers", unit)
        return [{"from": a.isoformat(), "to": b.isoformat(), "unit": unit, "level": level,
                 **index_over(rows, basis, a, b)} for a, b in _buckets(start, end, interval)]

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

    @router.get("/stats/index.{fmt}", dependencies=[require(STATS_READ)],
                summary="The service index as CSV or an Excel sheet: a row per component, then the total")
    async def service_index_export(fmt: Format, start: Start, end: End, unit: UnitCode = None,
                                   level: Level = None) -> Response:
        scored = await service_index(start, end, unit, level)
        scope = {k: scored[k] for k in ("from", "to", "unit", "level", "table")}
        rows = [{**scope, "group": g["key"], "group_name": g["name"], "component": c["key"],
                 "component_name": c["name"], **{k: c[k] for k in COMPONENT_FIGURES}}
                for g in scored["groups"] for c in g["components"]]
        rows.append({**scope, "group": "total", "group_name": "Tổng điểm", "component": "", "component_name": "",
                     **dict.fromkeys(COMPONENT_FIGURES), "points": scored["total"], "max_points": scored["max_points"]})
        return export(rows, f"lienthong-chiso-{_scope_name(scope)}-{scope['from']}-{scope['to']}", fmt)

    @router.get("/stats/index/units.{fmt}", dependencies=[require(STATS_READ)],
                summary="The units ranked by the service index as CSV or an Excel sheet: a row per unit with its "
                        "total and each component's points")
    async def index_ranking_export(fmt: Format, start: Start, end: End) -> Response:
        rows = [{"rank": rank, "unit": r["unit"], "name": r["name"], "level": r["level"], "total": r["total"],
                 **{c["key"]: c["points"] for g in r["groups"] for c in g["components"]}}
                for rank, r in enumerate(await index_ranking(start, end), start=1)]
        return export(rows, f"lienthong-chiso-donvi-{start.isoformat()}-{end.isoformat()}", fmt)

    @router.get("/stats/index/dossiers", dependencies=[require(STATS_READ)],
                summary="The dossiers behind one component of the index: those short of it (default), those "
                        "counted in its numerator, or all of its denominator",
                responses={422: {"description": "Unknown component, unit or period"}})
    async def index_dossiers(
        component: Annotated[str, Query(max_length=64, description="A component's key, as `/v1/stats/index` "
                                                                   "names it")],
        start: Start, end: End, unit: UnitCode = None, level: Level = None,
        which: Annotated[Literal["short", "counted", "all"], Query(
            description="short: in the denominator, not the numerator; counted: in the numerator")] = "short",
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict:
        _check_range(start, end)
        chosen = table.component(component)
        if chosen is None:
            keys = [c.key for g in table.groups for c in g.components]
            raise HTTPException(422, detail=[{"field": "component", "type": "unknown_component",
                                              "message": f"one of: {', '.join(keys)}"}])
        scope, basis = _units_in_scope(unit, level), _basis("dossiers", unit)
        answer = {"component": chosen.key, "name": chosen.name, "from": start.isoformat(), "to": end.isoformat(),
                  "unit": unit, "level": level, "which": which}
        if which == "short":  # the usual question, answered from the rows: the `~short` cells and the index's counts
            in_scope = (lambda units: True) if scope is None else (lambda units: not set(units).isdisjoint(scope))
            short = sorted((day, code) for day, code, receiving, competent in await store.shortfalls(
                chosen.measure, start.isoformat(), end.isoformat())
                if in_scope([receiving] if basis == "recv" else [receiving, competent]))
            docs = {d["_id"]: d for d in await store.dossiers([code for _, code in short[:limit]])}
            counted = next(c for g in index_over(await rows_of(start, end, unit, level), basis, start, end)["groups"]
                           for c in g["components"] if c["key"] == chosen.key)
            return {**answer, "numerator": counted["numerator"], "denominator": counted["denominator"],
                    "count": len(short), "truncated": len(short) > limit,
                    # a dossier whose rows are stored and its document not yet (a flush under way) is left out
                    "dossiers": [_dossier_row(docs[code], False, live) for _, code in short[:limit] if code in docs]}
        docs = await store.dossiers_between(PER_DOSSIER[chosen.measure][0], start.isoformat(), end.isoformat(),
                                            scope)
        behind = dossiers_behind(docs, chosen.measure, basis,
                                 (lambda u: True) if scope is None else set(scope).__contains__, start, end)
        listed = [(doc, meets) for doc, meets in behind if which == "all" or meets == (which == "counted")]
        listed.sort(key=lambda pair: (pair[0].get(PER_DOSSIER[chosen.measure][0]) or "", pair[0]["_id"]))
        return {**answer, "numerator": sum(meets for _, meets in behind), "denominator": len(behind),
                "count": len(listed), "truncated": len(listed) > limit,
                "dossiers": [_dossier_row(doc, meets, live) for doc, meets in listed[:limit]]}

    @router.get("/stats/summary", dependencies=[require(STATS_READ)], summary="Figures for a period, as the province reports them")
    async def summary(start: Start, end: End, unit: UnitCode = None, level: Level = None,
                      basis: Basis = "dossiers") -> dict:
        return await figures(start, end, unit, level, basis)

    @router.get("/stats/summary.{fmt}", dependencies=[require(STATS_READ)],
                summary="The same figures as CSV or an Excel sheet, for the periodic report (one header row, one "
                        "value row)")
    async def summary_export(fmt: Format, start: Start, end: End, unit: UnitCode = None, level: Level = None,
                             basis: Basis = "dossiers") -> Response:
        row = await figures(start, end, unit, level, basis)
        return export([row], f"lienthong-{_scope_name(row)}-{row['from']}-{row['to']}", fmt)

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


def _units_in_scope(unit: str | None, level: str | None) -> list[str] | None:
    """The units a scope covers: one unit, a level's, or None for the whole province."""
    units = catalogue().units
    if unit is not None:
        if unit not in units:
            raise HTTPException(422, detail=[{"field": "unit", "type": "unknown_unit", "message": "no such unit"}])
        return [unit] if level is None or units[unit].level == level else []
    return None if level is None else [u for u, known in units.items() if known.level == level]


def _scope_name(scope: dict) -> str:
    return scope["unit"] or scope["level"] or "tinh"


COMPONENT_FIGURES = ("numerator", "denominator", "rate", "points", "max_points")
# What a listed dossier shows: where and when, and the facts the index reads (no personal data is projected).
DOSSIER_FIELDS = ("procedure", "receiving_unit", "competent_unit", "channel", "status", "received_day", "due_date",
                  "closed_day", "on_time", "digitised", "fee", "paid", "paid_day", "result_electronic", "rating",
                  "rated_day")


def procedure_name(live: LiveCatalogue, code: str) -> str | None:
    known = live.procedure(code)
    return known.name if known else None


def _dossier_row(doc: dict, meets: bool, live: LiveCatalogue) -> dict:
    return {"code": doc["_id"], **{k: doc.get(k) for k in DOSSIER_FIELDS},
            "procedure_name": procedure_name(live, doc["procedure"]), "counted": meets}


def export(rows: list[dict], filename: str, fmt: str) -> Response:
    """Rows as a CSV file or an Excel sheet (a header row of the first row's keys), as a download."""
    columns = list(rows[0]) if rows else []
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})
    from openpyxl import Workbook  # here: ~0.1 s of every start of the service, for a rare download

    book = Workbook()
    sheet = book.active
    sheet.title = "Tong hop"
    sheet.append(columns)
    for row in rows:
        sheet.append([row.get(c) for c in columns])
    data = io.BytesIO()
    book.save(data)
    return Response(data.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'})


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
