"""HTTP edge of stats: the province's figures and the citizen's public tracking."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from lienthong.catalogue import catalogue
from stats.projection import summarize
from stats.store import ProjectionStore

CODE_PATTERN = r"^[A-Z][A-Z0-9]{1,15}-\d{6}-\d{4,6}$"


def build_router(store: ProjectionStore) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/stats/summary", summary="Figures for a period, as the province reports them")
    async def summary(
        start: Annotated[date, Query(alias="from")],
        end: Annotated[date, Query(alias="to")],
        unit: Annotated[str | None, Query(pattern=r"^[A-Z][A-Z0-9]{1,15}$")] = None,
        level: Literal["commune", "province"] | None = None,
    ) -> dict:
        if end < start:
            raise HTTPException(422, detail=[{"field": "to", "type": "range", "message": "`to` is before `from`"}])
        units = catalogue().units
        if unit is not None and unit not in units:
            raise HTTPException(422, detail=[{"field": "unit", "type": "unknown_unit", "message": "no such unit"}])
        docs = await store.figure_docs(end.isoformat())
        if unit is not None:
            docs = [d for d in docs if unit in (d["receiving_unit"], d["competent_unit"])]
        if level is not None:
            docs = [d for d in docs if units[d["receiving_unit"]].level == level]
        return {"from": start, "to": end, "unit": unit, "level": level, **summarize(docs, start, end).as_dict()}

    @router.get("/dossiers/{code}", summary="Public tracking of one dossier (no personal data)")
    async def tracking(code: Annotated[str, Path(pattern=CODE_PATTERN)]) -> dict:
        doc = await store.tracking(code)
        if doc is None:
            raise HTTPException(404, detail=[{"field": "code", "type": "not_found", "message": "no such dossier"}])
        return {
            "code": doc["_id"],
            "procedure": doc["procedure"],
            "applicant": doc["applicant"],  # masked at projection time
            "status": doc["status"],
            "receiving_unit": doc["receiving_unit"],
            "current_unit": doc.get("current_unit"),
            "step": doc.get("step"),
            "due_date": doc["due_date"],
            "timeline": [{k: e[k] for k in ("event", "time", "unit")} for e in doc["timeline"]],
        }

    return router
