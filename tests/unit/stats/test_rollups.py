"""Rollups against the definition: figures read from day x unit rows, built from event deltas, equal the figures
counted item by item (`summarize`) for every basis, unit, level and period."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.personal import stand_in
from lienthong.calendar import VN_TZ, add_working_days
from lienthong.catalogue import catalogue
from lienthong.contracts.dossier import (
    Applicant,
    DeadlineExtended,
    DossierAssigned,
    DossierRejected,
    DossierResolved,
    DossierResumed,
    DossierSubmitted,
    DossierWithdrawn,
    FeePaid,
    SatisfactionRated,
    StepCompleted,
)
from lienthong.contracts.envelope import new_event
from stats import index, rollups
from stats.projection import apply, count_facts, summarize

START = date(2025, 7, 1)
UNITS = ["HACTHANH", "HOANGSON", "BIMSON", "CATINH", "VPDKDD"]


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=VN_TZ)


def dossier_events(rng: random.Random, n: int) -> list:
    """One dossier's events: a chain of 1-3 steps over units, pauses, extensions, and an outcome (or none)."""
    code = f"HACTHANH-250701-{n:04d}"
    received = START + timedelta(days=rng.randrange(20))
    due = received + timedelta(days=rng.randrange(0, 6))
    receiving = rng.choice(UNITS[:3])
    applicant = Applicant(citizen_id="038099001122", full_name="Lê Văn A", address="x", residence_unit=receiving)
    datas = [(received, DossierSubmitted(
        procedure_code=rng.choice(["HT-KS", "DD-CN"]), channel=rng.choice(["online", "online", "direct", "postal"]),
        receiving_unit=receiving, external_ref=code, received_at=at(received, 8), due_date=due, processing_days=3,
        applicant=stand_in(applicant), documents_digitised=rng.random() < 0.7, fee_vnd=rng.choice([0, 0, 20_000]),
        fee_exempt=rng.random() < 0.2))]
    if datas[0][1].fee_vnd and not datas[0][1].fee_exempt and rng.random() < 0.7:
        paid_on = received + timedelta(days=rng.randrange(0, 3))  # a day's rows of their own, maybe another month
        datas.append((received, FeePaid(unit_code=receiving, method=rng.choice(["online", "counter"]),
                                        amount_vnd=20_000, paid_at=at(paid_on, 10))))
    day = received
    for step in range(rng.choice([1, 1, 2, 3])):
        unit = rng.choice(UNITS)
        datas.append((day, DossierAssigned(unit_code=unit, step=step, step_name="s",
                                           step_due_date=day + timedelta(days=rng.randrange(0, 4)))))
        if rng.random() < 0.2:
            datas.append((day, DossierResumed(unit_code=unit, paused_working_days=2,
                                              new_due_date=add_working_days(due, 2))))
            due = add_working_days(due, 2)
        if rng.random() < 0.1:
            due = add_working_days(due, 3)
            datas.append((day, DeadlineExtended(unit_code=unit, working_days=3, reason="r", new_due_date=due)))
        if rng.random() < 0.15:
            break  # still open at this step, or closed below without completing it
        day = day + timedelta(days=rng.randrange(0, 5))
        datas.append((day, StepCompleted(unit_code=unit, step=step)))
    outcome = rng.choices(["resolved", "rejected", "withdrawn", "open"], [70, 8, 7, 15])[0]
    if outcome == "resolved" and isinstance(datas[-1][1], StepCompleted):
        datas.append((day, DossierResolved(unit_code=unit, resolved_at=at(day, 16), due_date=due, on_time=day <= due,
                                           result_electronic=rng.random() < 0.8)))
    elif outcome in ("rejected", "withdrawn"):
        day = day + timedelta(days=rng.randrange(0, 3))
        datas.append((day, DossierRejected(unit_code=unit, reason="r") if outcome == "rejected"
                      else DossierWithdrawn(reason=None)))
    if outcome in ("resolved", "rejected") and rng.random() < 0.6:
        for _ in range(rng.choice([1, 2])):  # a changed rating moves from one counter to another
            day = day + timedelta(days=rng.randrange(0, 4))
            datas.append((day, SatisfactionRated(rating=rng.choice(["very_satisfied", "satisfied", "unsatisfied"]))))
    return [new_event(d, subject=code, source="/t", seq=i + 1, time=at(when, 9 + i % 8))
            for i, (when, d) in enumerate(datas)]


def build(seed: int, dossiers: int):
    """Day rows per slot as the store keeps them (the month-only `~units` slot as month -> unit -> counters)."""
    rng = random.Random(seed)
    docs, rows, monthly = [], {}, {}
    for n in range(dossiers):
        doc = None
        for event in dossier_events(rng, n):
            after = apply(doc, event)
            for (day, slot, field), k in rollups.delta(doc, after).items():
                if slot == rollups.UNIT_MONTHS:
                    unit, basis, counter = field.split(".")
                    units = monthly.setdefault(day[:7], {})
                    units.setdefault(unit, {}).setdefault(basis, Counter())[counter] += k
                    continue
                row = rows.setdefault((day, slot), {"day": day, "unit": slot})
                basis, _, counter = field.partition(".")
                row.setdefault(basis, Counter())[counter] += k
            doc = after
        docs.append(doc)
    return docs, list(rows.values()), monthly


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), lo=st.integers(0, 60), length=st.integers(0, 60))
def test_rows_built_from_deltas_give_the_figures_counted_item_by_item(seed, lo, length):
    docs, rows, monthly = build(seed, 60)
    start = START + timedelta(days=lo)
    end = start + timedelta(days=length)
    for basis in rollups.BASES:
        items = [(u, item) for d in docs for u, item in rollups.work_items(d, basis)]
        for unit in UNITS:
            mine = [r for r in rows if r["unit"] == unit]
            assert rollups.figures(mine, basis, start, end) == summarize([i for u, i in items if u == unit],
                                                                        start, end), (basis, unit)
            assert rollups.facts(mine, basis, start, end) == (
                count_facts([i for u, i in items if u == unit], start, end) if basis != "step"
                else dict.fromkeys(rollups.FACTS, 0)), (basis, unit)  # the index counts dossiers, not steps
        if basis not in rollups.TOTAL_BASES:
            continue
        province = [r for r in rows if r["unit"] == rollups.PROVINCE]
        assert rollups.figures(province, basis, start, end) == summarize([i for _, i in items], start, end)
        if basis == "recv":
            assert rollups.facts(province, basis, start, end) == count_facts([i for _, i in items], start, end)
        for level in ("commune", "province"):
            at_level = [r for r in rows if r["unit"] == rollups.level_slot(level)]
            expected = [i for u, i in items if catalogue().units[u].level == level]
            assert rollups.figures(at_level, basis, start, end) == summarize(expected, start, end)
    unit_days = [r for r in rows if rollups.is_unit_slot(r["unit"])]
    ranking = rollups.ranking_rows(monthly, unit_days, start, end)
    for basis in rollups.RANKED_BASES:
        for unit in UNITS:
            assert (rollups.figures([r for r in ranking if r["unit"] == unit], basis, start, end)
                    == rollups.figures([r for r in unit_days if r["unit"] == unit], basis, start, end)), (basis, unit)
            assert (rollups.facts([r for r in ranking if r["unit"] == unit], basis, start, end)
                    == rollups.facts([r for r in unit_days if r["unit"] == unit], basis, start, end)), (basis, unit)
    for unit in UNITS:  # day x receiving unit x procedure x channel adds up to the unit's received
        mine = [r for r in rows if r["unit"] == unit]
        breakdown = [r for r in rows if r["unit"] == rollups.breakdown_slot(unit)]
        by = sum(n for r in breakdown for procedure, per_channel in r.items() if procedure not in ("day", "unit")
                 for key, n in per_channel.items() if key.startswith(key.split(".")[0] + ".received_"))
        assert by == rollups.figures(mine, "recv", START, START + timedelta(99)).received
    by_procedure = Counter()
    for row in rows:
        if row["unit"].startswith("#"):
            for channel in ("online", "direct", "postal"):
                by_procedure[channel] += row.get(channel, Counter())[f"received_{channel}"]
    total = rollups.figures([r for r in rows if r["unit"] == rollups.PROVINCE], "recv", START, START + timedelta(99))
    assert sum(by_procedure.values()) == total.received


def test_a_chain_counts_once_for_the_citizen_and_once_per_step_for_the_units():
    day = START
    sub = DossierSubmitted(procedure_code="DD-CN", channel="online", receiving_unit="HACTHANH", external_ref="x",
                           received_at=at(day, 8), due_date=day + timedelta(days=10), processing_days=8,
                           applicant=stand_in(Applicant(citizen_id="038099001122", full_name="Lê Văn A", address="x",
                                               residence_unit="HACTHANH")))
    datas = [sub]
    for step, unit in enumerate(["VPDKDD", "CATINH", "HACTHANH"]):
        datas += [DossierAssigned(unit_code=unit, step=step, step_name="s", step_due_date=day + timedelta(days=3)),
                  StepCompleted(unit_code=unit, step=step)]
    datas.append(DossierResolved(unit_code="HACTHANH", resolved_at=at(day, 16), due_date=day, on_time=True))
    doc = None
    for i, d in enumerate(datas):
        doc = apply(doc, new_event(d, subject="HACTHANH-250701-0001", source="/t", seq=i + 1, time=at(day, 9)))
    cells = {c: n for c, n in rollups.contributions(doc).items() if rollups.is_unit_slot(c[1])}
    received = {basis: sum(n for (_, _, f), n in cells.items() if f == f"{basis}.received_online")
                for basis in rollups.BASES}
    assert received == {"recv": 1, "any": 2, "step": 3}  # any: HACTHANH received it, VPDKDD was competent
    assert {u for (_, u, f) in cells if f == "step.resolved_on_time"} == {"VPDKDD", "CATINH", "HACTHANH"}
    totals = rollups.contributions(doc)
    assert totals[(day.isoformat(), rollups.PROVINCE, "recv.received_online")] == 1  # the citizen: once
    assert totals[(day.isoformat(), rollups.PROVINCE, "step.received_online")] == 3  # the units: per step
    assert totals[(day.isoformat(), rollups.procedure_slot("DD-CN"), "online.received_online")] == 1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), lo=st.integers(0, 60), length=st.integers(0, 60))
def test_the_dossiers_behind_each_component_are_the_ones_its_rate_counts(seed, lo, length):
    """`index.dossiers_behind` (dossier documents, one by one) gives every component's numerator and denominator as
    scored from the rows, for the province, each level and each unit."""
    docs, rows, _ = build(seed, 60)
    start = START + timedelta(days=lo)
    end = start + timedelta(days=length)
    levels = {level: {u for u, known in catalogue().units.items() if known.level == level}
              for level in ("commune", "province")}
    scopes = [(rollups.PROVINCE, "recv", lambda u: True)]
    scopes += [(rollups.level_slot(level), "recv", units.__contains__) for level, units in levels.items()]
    scopes += [(unit, "any", unit.__eq__) for unit in UNITS]
    for slot, basis, in_scope in scopes:
        mine = [r for r in rows if r["unit"] == slot]
        summary, facts = rollups.figures(mine, basis, start, end), rollups.facts(mine, basis, start, end)
        for measure, rate in index.MEASURES.items():
            behind = index.dossiers_behind(docs, measure, basis, in_scope, start, end)
            assert (sum(meets for _, meets in behind), len(behind)) == rate(summary, facts), (slot, measure)


def folded_cells(seed: int, wanted) -> tuple[list[dict], Counter]:  # noqa: ANN001
    """60 dossiers folded event by event: their documents, and the (day, field) cells of the slots `wanted(day,
    slot)` picks, as the deltas leave them."""
    rng = random.Random(seed)
    cells: Counter = Counter()
    docs = []
    for n in range(60):
        doc = None
        for event in dossier_events(rng, n):
            after = apply(doc, event)
            for (day, slot, field), k in rollups.delta(doc, after).items():
                if wanted(day, slot):
                    cells[(day, field)] += k
            doc = after
        docs.append(doc)
    return docs, cells


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_the_open_slot_holds_each_open_dossier_once_at_its_due_date_where_it_is_now(seed):
    """What the overdue list reads: folded event by event, the `~open` cells are exactly the dossiers not closed,
    each once, on its due date (moved by pauses and extensions), with the unit and step holding it."""
    docs, cells = folded_cells(seed, lambda day, slot: slot == rollups.OPEN)
    listed = [rollups.open_dossier(day, entry) for (day, entry), k in cells.items() if k]
    assert all(k in (0, 1) for k in cells.values())
    assert sorted(listed, key=lambda d: d["code"]) == [
        {"code": d["_id"], "unit": d.get("current_unit") or d["receiving_unit"], "procedure": d["procedure"],
         "step": d.get("step"), "due_date": d["due_date"]} for d in sorted(docs, key=lambda d: d["_id"])
        if d["closed_day"] is None]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), lo=st.integers(0, 40), length=st.integers(0, 60))
def test_the_short_slots_hold_the_dossiers_each_component_counts_and_they_fall_short_of(seed, lo, length):
    """What the listing behind a component reads by default: folded event by event, the `~short<DD>` cells of a
    period are the dossiers the component's denominator counts and its numerator does not, for every scope."""
    docs, cells = folded_cells(seed, lambda day, slot: slot == rollups.short_slot(day))
    assert not any(slot.startswith(rollups.SHORT) and slot != rollups.short_slot(day)
                   for doc in docs for day, slot, _ in rollups.contributions(doc))
    start = START + timedelta(days=lo)
    end = start + timedelta(days=length)
    held = [(day, *field.split("|")) for (day, field), k in cells.items() if k]
    assert all(k in (0, 1) for k in cells.values())
    for measure in rollups.PER_DOSSIER:
        for unit in (None, *UNITS):
            behind = index.dossiers_behind(docs, measure, "recv" if unit is None else "any",
                                           (lambda u: True) if unit is None else {unit}.__contains__, start, end)
            assert sorted(code for day, m, code, receiving, competent in held
                          if m == measure and start.isoformat() <= day <= end.isoformat()
                          and unit in (None, receiving, competent)) == sorted(
                doc["_id"] for doc, meets in behind if not meets), (measure, unit)
