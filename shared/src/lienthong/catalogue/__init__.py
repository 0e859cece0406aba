"""Reference data: the province's units and its procedure catalogue (chains are data, not code)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lienthong.contracts.types import Channel, ProcedureCode, ShortText, UnitCode

UnitKind = Literal[
    "centre", "department", "land_registry", "land_branch", "tax", "police", "social_insurance", "commune"
]
# Where a step is handled: a fixed unit code, or a role resolved per dossier by routing.
StepUnitRole = Literal["receiving", "competent_commune", "residence_commune", "parcel_branch"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Unit(_Frozen):
    code: UnitCode
    name: str
    level: Literal["province", "commune"]
    kind: UnitKind
    receives: bool = Field(description="Has a Public Administrative Service Centre that receives dossiers")
    parent: UnitCode | None = None
    land_branch: UnitCode | None = Field(None, description="Land-registry branch office covering this commune")


class Step(_Frozen):
    name: ShortText
    unit: StepUnitRole | UnitCode
    days: int = Field(ge=0, le=120, description="Working days allowed for this step")
    citizen_action: bool = Field(False, description="The citizen acts (e.g. pays); the clock is paused meanwhile")


class Procedure(_Frozen):
    code: ProcedureCode
    name: str = Field(min_length=1, max_length=500)
    level: Literal["province", "commune"]
    field: str | None = Field(None, max_length=200, description="Field (lĩnh vực), as in the national database")
    online: Literal["full", "partial", "none"] = Field(description="Online public service: full (toàn trình), "
                                                      "partial (một phần), or none")
    channels: tuple[Channel, ...] = Field(min_length=1)
    required_documents: tuple[str, ...]
    needs_land_parcel: bool = False
    fee_vnd: int = Field(0, ge=0, le=1_000_000_000, description="Fees and charges (phí, lệ phí), in đồng")
    fee_exemption: str | None = Field(None, max_length=300, description="The act exempting the fee, if any "
                                      "(e.g. Nghị quyết 12/NQ-HĐND of 24 June 2025)")
    steps: tuple[Step, ...] = Field(min_length=1, max_length=20)

    @property
    def processing_days(self) -> int:
        return sum(step.days for step in self.steps)

    @property
    def is_chain(self) -> bool:
        return len(self.steps) > 1

    @model_validator(mode="after")
    def _online_channel_matches(self) -> Procedure:
        if ("online" in self.channels) != (self.online == "full"):
            raise ValueError("only full-online procedures accept the online channel")
        return self


class Catalogue(_Frozen):
    units: dict[str, Unit]
    procedures: dict[str, Procedure]

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalogue:
        roles = set(StepUnitRole.__args__)  # type: ignore[attr-defined]
        for proc in self.procedures.values():
            for step in proc.steps:
                if step.unit not in roles and step.unit not in self.units:
                    raise ValueError(f"procedure {proc.code}: step {step.name!r} names unknown unit {step.unit}")
        for unit in self.units.values():
            if unit.land_branch and self.units.get(unit.land_branch, None) is None:
                raise ValueError(f"unit {unit.code}: unknown land branch {unit.land_branch}")
        return self

    def communes(self) -> list[Unit]:
        return [u for u in self.units.values() if u.level == "commune"]

    def receiving_units(self) -> list[Unit]:
        return [u for u in self.units.values() if u.receives]


def _load(name: str) -> list[dict]:
    return json.loads(files("lienthong.catalogue").joinpath("data", name).read_text(encoding="utf-8"))


@cache
def catalogue() -> Catalogue:
    return Catalogue(
        units={u["code"]: u for u in _load("units.json")},
        procedures={p["code"]: p for p in _load("procedures.json")},
    )
