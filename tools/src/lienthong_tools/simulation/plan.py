"""What the simulated province does, decided from a seed alone: who files which dossier, when, where and how, and
what each unit (or the citizen) does with every step. Same seed, same start, same plan.

Time is simulated: `speedup` simulated seconds pass per real second. Counters and post offices work office hours
on working days (the shared calendar); the national portal takes dossiers at any hour, fewer at night. Agencies
act in office hours only, so a step due in two working days takes at most two working days of simulated time.
The services keep their own real clocks: a step held "late" by the simulation is late for routing and stats
only once its real due date passes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal

from lienthong.calendar import VN_TZ, is_working_day
from lienthong.catalogue import Catalogue, catalogue

OFFICE_HOURS = ((time(7, 30), time(11, 30)), (time(13, 30), time(17, 0)))
NIGHT_SHARE = 0.25  # the portal's arrival rate outside office hours, relative to the rate in them
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đỗ", "Bùi", "Đặng", "Ngô", "Lò", "Hà", "Cầm"]
MIDDLE = ["Văn", "Thị", "Đức", "Minh", "Thu", "Ngọc", "Hữu", "Thanh"]
GIVEN = ["An", "Bình", "Chi", "Dũng", "Hà", "Hùng", "Lan", "Linh", "Mai", "Nam", "Phương", "Quang", "Sơn", "Trang"]
# Procedures by how often citizens file them (civil status leads; chains and land are rarer). Counter-only
# procedures are kept rare so that, with 98% of the rest filed online, ~96-97% of all dossiers are online.
PROCEDURE_WEIGHTS = {"HT-KS": 180, "HT-KH": 80, "HT-XNHN": 100, "CT-BS": 8, "KD-HKD": 60, "XD-GPXD": 2,
                     "TP-LLTP": 80, "YT-CCHN": 20, "DD-CDGCN": 3, "LT-KS-TT-BHYT": 120, "LT-KT-XTT-MT": 40,
                     "DD-CNQSDD": 6}
# What happens to a step: the unit completes it in time, asks for papers first, refuses, holds it past its due
# date; or the citizen withdraws. Shares echo the province's reports (on-time rate ~99%).
FATES = {"complete": 930, "supplement": 40, "reject": 12, "late": 10, "withdraw": 8}
Fate = Literal["complete", "supplement", "reject", "late", "withdraw"]
# The service index's facts (our assumptions: the seeds give no rates for them): papers scanned at the counter, a
# fee paid online rather than at the counter, a result issued electronically, a citizen who rates the outcome and
# how (the seeds: "100% of dossiers' progress and results are public").
DIGITISED_AT_COUNTER = 0.8
PAID_ONLINE = 0.7
ELECTRONIC_RESULT = 0.85
RATED = 0.3
RATINGS = {"very_satisfied": 70, "satisfied": 25, "unsatisfied": 5}


@dataclass(frozen=True)
class Filing:
    """One dossier submission: when (simulated), through which door, and the body intake receives."""

    at: datetime
    via: Literal["http", "kafka"]
    body: dict


@dataclass(frozen=True)
class Action:
    """Something a unit or the citizen does about one assignment, `after` simulated time from it."""

    kind: Literal["started", "completed", "supplement-requested", "supplement-provided", "rejected", "withdrawn"]
    after: timedelta


def in_office(moment: datetime) -> bool:
    local = moment.astimezone(VN_TZ)
    return is_working_day(local.date()) and any(a <= local.time() < b for a, b in OFFICE_HOURS)


def filings(seed: int, rate: float, duration_s: float | None, start: datetime, speedup: float = 1.0,
            cat: Catalogue | None = None) -> Iterator[Filing]:
    """Arrivals at `rate` per real second in office hours (a Poisson process), over `duration_s` real seconds
    (None: without end). `at` is simulated time: the real offset is (at - start) / speedup."""
    cat = cat or catalogue()
    rng = random.Random(seed)
    receiving = sorted(u.code for u in cat.units.values() if u.receives)
    communes = sorted(u.code for u in cat.units.values() if u.level == "commune")
    t = 0.0
    n = 0
    while True:
        t += rng.expovariate(rate)
        if duration_s is not None and t >= duration_s:
            return
        at = start + timedelta(seconds=t * speedup)
        office = in_office(at)
        if not office and rng.random() > NIGHT_SHARE:
            continue  # the night is quieter: thin the arrivals
        n += 1
        code = rng.choices(list(PROCEDURE_WEIGHTS), weights=list(PROCEDURE_WEIGHTS.values()))[0]
        proc = cat.procedures[code]
        channel = _channel(rng, proc.channels, office)
        if channel is None:
            continue  # a counter-only procedure at night: nobody files it
        residence = rng.choice(communes)
        # Most file where they live; any centre must accept the rest ("phi địa giới hành chính").
        unit = residence if rng.random() < 0.85 else rng.choice(receiving)
        if proc.level == "commune" and cat.units[unit].level != "commune":
            unit = residence
        body = {
            "procedure_code": code,
            "channel": channel,
            "receiving_unit": unit,
            "external_ref": f"SIM{seed}-{n:07d}",
            "applicant": _applicant(rng, residence),
            "documents": [{"kind": kind, "name": f"{kind}.pdf", "sha256": _sha256(f"{seed}/{n}/{kind}")}
                          for kind in proc.required_documents],
        }
        if proc.needs_land_parcel:
            body["land_parcel"] = f"{residence}-{rng.randint(1, 60)}-{rng.randint(1, 900)}"
        if channel != "online":  # a draw of its own, so the plan's other draws stay what they were for a seed
            body["documents_digitised"] = _rng(seed, "digitised", n).random() < DIGITISED_AT_COUNTER
        # Counter applications of the commune centres speak Kafka; the portal and post offices use HTTP.
        yield Filing(at=at, via="kafka" if channel == "direct" and rng.random() < 0.5 else "http", body=body)


def _channel(rng: random.Random, offered: tuple[str, ...], office: bool) -> str | None:
    if "online" in offered and (not office or rng.random() < 0.985):
        return "online"
    if not office:
        return None
    return "postal" if "postal" in offered and rng.random() < 0.12 else "direct"


def _applicant(rng: random.Random, residence: str) -> dict:
    name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
    return {"citizen_id": f"038{rng.randrange(10**9):09d}", "full_name": name,
            "phone": f"09{rng.randrange(10**8):08d}", "address": f"Thôn {rng.randint(1, 12)}, {residence}",
            "residence_unit": residence}


def fate(seed: int, dossier: str, step: int) -> Fate:
    """What happens to one step of one dossier: a function of the seed and the dossier, not of arrival order."""
    rng = _rng(seed, dossier, step)
    return rng.choices(list(FATES), weights=list(FATES.values()))[0]  # type: ignore[return-value]


def actions(seed: int, dossier: str, step: int, step_days: int) -> list[Action]:
    """The outcomes one assignment gets, in order, with simulated working-time delays from the assignment."""
    rng = _rng(seed, dossier, step, "timing")
    budget = timedelta(hours=8 * max(step_days, 0.25))  # a working day is eight office hours here
    start = budget * rng.uniform(0.02, 0.1)
    done = budget * rng.uniform(0.3, 0.9)
    match fate(seed, dossier, step):
        case "complete":
            return [Action("started", start), Action("completed", done)]
        case "supplement":
            asked = budget * rng.uniform(0.1, 0.3)
            return [Action("started", start), Action("supplement-requested", asked),
                    Action("supplement-provided", asked + timedelta(hours=rng.uniform(2, 16))),
                    Action("completed", asked + timedelta(hours=18) + done)]
        case "reject":
            return [Action("started", start), Action("rejected", done)]
        case "late":
            return [Action("started", start), Action("completed", budget + timedelta(hours=rng.uniform(8, 24)))]
        case _:
            return [Action("withdrawn", start)]


def paid_online(seed: int, dossier: str) -> bool:
    return _rng(seed, dossier, "fee").random() < PAID_ONLINE


def electronic_result(seed: int, dossier: str, step: int) -> bool:
    return _rng(seed, dossier, step, "result").random() < ELECTRONIC_RESULT


def rating(seed: int, dossier: str) -> tuple[str, timedelta] | None:
    """Whether the citizen rates the outcome, how, and how long after it (office time)."""
    rng = _rng(seed, dossier, "rating")
    if rng.random() >= RATED:
        return None
    return rng.choices(list(RATINGS), weights=list(RATINGS.values()))[0], timedelta(hours=rng.uniform(0.5, 16))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def add_office_time(moment: datetime, delay: timedelta) -> datetime:
    """`moment` plus `delay` of office time (working days, office hours), in simulated time."""
    local = moment.astimezone(VN_TZ)
    remaining = delay
    while True:
        for a, b in OFFICE_HOURS:
            opens = datetime.combine(local.date(), a, VN_TZ)
            closes = datetime.combine(local.date(), b, VN_TZ)
            if not is_working_day(local.date()) or local >= closes:
                continue
            local = max(local, opens)
            if local + remaining <= closes:
                return local + remaining
            remaining -= closes - local
            local = closes
        local = datetime.combine(local.date() + timedelta(days=1), time(0, 0), VN_TZ)
