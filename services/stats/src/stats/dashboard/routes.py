"""HTTP edge of the dashboard: the page, topic health, charts, and the overdue list."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

from lienthong.auth import OPS_READ, STATS_READ, require
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from lienthong.calendar import today_vn, working_days_between
from lienthong.catalogue.versions import LiveCatalogue
from stats.api import procedure_name, timeseries_of
from stats.dashboard import charts
from stats.dashboard.topics import TopicMonitor
from stats.store import ProjectionStore

STATIC = Path(__file__).parent / "static"
SVG = "image/svg+xml; charset=utf-8"


def build_router(store: ProjectionStore, monitor: TopicMonitor, live: LiveCatalogue | None = None) -> APIRouter:
    live = live or LiveCatalogue()
    router = APIRouter()

    @router.get("/dashboard", include_in_schema=False, dependencies=[require(STATS_READ)])
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @router.get("/v1/ops/topics", tags=["ops"], dependencies=[require(OPS_READ)], summary="Topic health: rates, partitions, lag per group, DLQs")
    async def topics() -> dict:
        sampled = monitor.samples[-1].at if monitor.samples else None
        return {"sampled_at": sampled, "topics": monitor.table()}

    @router.get("/dashboard/charts/lag.svg", include_in_schema=False, dependencies=[require(OPS_READ)])
    async def lag_chart() -> Response:
        return Response(charts.lag(monitor.lag_history()), media_type=SVG)

    @router.get("/dashboard/charts/timeseries.svg", include_in_schema=False,
                dependencies=[require(STATS_READ)])
    async def timeseries_chart(
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
        unit: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9]{1,15}$")] = None,
    ) -> Response:
        end = end or today_vn()
        start = start or end - timedelta(days=29)
        series = await timeseries_of(store, start, end, unit, "day", "dossiers")  # the API's own numbers
        return Response(charts.received_resolved(series), media_type=SVG)

    @router.get("/v1/stats/overdue", dependencies=[require(STATS_READ)], summary="Open dossiers past their due date, most overdue first")
    async def overdue(
        unit: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9]{1,15}$", description="Unit holding it")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict]:
        today = today_vn()
        docs = await store.overdue(today.isoformat(), unit, limit)
        return [{**d, "procedure_name": procedure_name(live, d["procedure"]),
                 "working_days_late": working_days_between(date.fromisoformat(d["due_date"]), today)} for d in docs]

    return router
