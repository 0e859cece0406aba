"""Constrained field types shared by every contract. Patterns are checked, values never echoed in errors."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

UnitCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9]{1,15}$")]
ProcedureCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9.\-]{1,31}$")]
DossierCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9]{1,15}-\d{6}-\d{4,6}$")]
CitizenId = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Phone = Annotated[str, StringConstraints(pattern=r"^(?:\+84|0)[35789]\d{8}$")]
Email = Annotated[
    str, StringConstraints(max_length=254, pattern=r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+$")
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
# Every date a dossier can carry lies in this century: a record beyond it (year 1, 9999-12-31) is a typo or an
# attack, and would break working-day arithmetic or make every query read thousands of empty months. Native
# constraints, checked inside pydantic-core (a Python validator per date cost a quarter of parsing an event).
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)

Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY)]
Instant = Annotated[AwareDatetime, Field(ge=datetime(2000, 1, 1, tzinfo=UTC), lt=datetime(2101, 1, 1, tzinfo=UTC))]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Subject = Annotated[str, StringConstraints(pattern=r"^p-[0-9a-f]{32}$")]
Sealed = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]+={0,2}$", max_length=8000)]

Channel = Literal["online", "direct", "postal"]


class Contract(BaseModel):
    """Base of every message: immutable, unknown fields rejected, inputs never echoed in errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
