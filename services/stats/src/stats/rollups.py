"""Rollups, pure: what a dossier adds to the rollup cells, and the figures read back from them.

Every counter is a flow, counted on the day it happens, so an event only ever adds to a few cells and a period's
figures are sums: received and closed flows over the period's days; "as of the period's end" figures as running
sums up to its last day (in progress = received - closed; overdue = due_passed - due_passed_closed, where an item
passes its due date the day after it and stops counting the day it closes, or passes due if that is later).

A cell is (day, slot, field). Slots:
- a unit's code, with fields `<basis>.<counter>`; `<unit>#`, with fields `<procedure>.<channel>.<counter>`
  repeating its `recv` counters (day x receiving unit x procedure x channel; a row apart, which figures never
  read, so that a unit's figures stay one small row per month);
- `*` (the province) and `@commune` / `@province` (totals by level), so that totals are read from one row per
  month instead of summed over every unit; `#<procedure>` (the province's `recv` counters per channel);
- `~units`: every unit's `any` and `step` counters summed per month (fields `<unit>.<basis>.<counter>`), so a
  ranking of all units reads one row per month plus the day rows of the months a period cuts;
- `~open`: each dossier not closed, once, on its due date, its field naming it (`open_entry`): the overdue list
  reads these few rows instead of searching every dossier (which FerretDB does by reading them all);
- `~short<DD>`: the day's dossiers that an index component counts and they fall short of (a late resolution, a
  filing not online, ...), one field per dossier and component: what the dashboard lists behind a component.
The service index's facts (`stats.index`) are flows of the dossier bases too (`recv`, `any`): digitised and fee
due or exempt on the day received, paid online or at the counter on the day paid, an electronic result on the day
resolved, the latest rating on the day it was given (a changed rating moves from one counter to another).
Three bases:
- `recv`: the dossier at its receiving unit; summed over units it counts each dossier once (the citizen's view,
  province and level totals; a chain counts once);
- `any`: the dossier at each unit that received it or was competent for it (`unit=` on the dossier basis);
- `step`: each step at the unit that held it (the units' view: a chain counts once per step).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any, Callable, Iterable, Literal

from lienthong.catalogue import catalogue
from stats.projection import FACTS, Summary

Basis = Literal["recv", "any", "step"]
BASES: tuple[Basis, ...] = ("recv", "any", "step")
COUNTERS = ("received_online", "received_direct", "received_postal", "resolved_on_time", "resolved_late",
            "rejected", "withdrawn", "due_passed", "due_passed_closed")
ITEM_FIELDS = ("received_day", "channel", "closed_day", "status", "on_time", "due_date")
FACT_FIELDS = ("digitised", "fee", "paid", "paid_day", "result_electronic", "rating", "rated_day")
TOTAL_BASES: tuple[Basis, ...] = ("recv", "step")  # the bases that sum over units
PROVINCE = "*"
UNIT_MONTHS = "~units"  # a month-only slot: the store keeps no day dimension for it
OPEN = "~open"  # the dossiers not closed, by due date
SHORT = "~short"  # per day: the dossiers an index component counts and they fall short of (`shortfalls`)
RANKED_BASES: tuple[Basis, ...] = ("any", "step")  # the bases a unit is ranked on
Cell = tuple[str, str, str]  # day, slot, field ("recv.received_online"; in a `#<procedure>` slot "online.rejected")


def level_slot(level: str) -> str:
    return f"@{level}"


def procedure_slot(procedure: str) -> str:
    return f"#{procedure}"


def breakdown_slot(unit: str) -> str:
    return f"{unit}#"


def is_unit_slot(slot: str) -> bool:
    return slot[:1] not in ("*", "@", "#", "~") and not slot.endswith("#")


def work_items(doc: dict[str, Any], basis: Basis) -> list[tuple[str, dict[str, Any]]]:
    """(unit, item) pairs of one dossier on a basis; items have the fields `projection.summarize` reads."""
    if basis == "step":
        pairs = [(s["unit"], {**{k: s[k] for k in ITEM_FIELDS if k != "channel"}, "channel": doc["channel"]})
                 for s in doc.get("steps", [])]
    else:
        dossier = {k: doc[k] for k in ITEM_FIELDS}
        dossier.update((k, doc.get(k)) for k in FACT_FIELDS)  # the index counts dossiers, not steps
        units = [doc["receiving_unit"]] if basis == "recv" else sorted({doc["receiving_unit"], doc["competent_unit"]})
        pairs = [(unit, dossier) for unit in units]
    # An item closes no earlier than it was received (clocks of different systems), so that "in progress" as a
    # running difference of flows never goes negative.
    return [(unit, {**item, "closed_day": max(item["closed_day"], item["received_day"])} if item["closed_day"]
             else item) for unit, item in pairs]


def item_flows(item: dict[str, Any]) -> list[tuple[str, str]]:
    """(day, counter) flows of one work item."""
    flows = [(item["received_day"], f"received_{item['channel']}")]
    due_passed = max(item["received_day"], (date.fromisoformat(item["due_date"]) + timedelta(days=1)).isoformat())
    flows.append((due_passed, "due_passed"))
    if closed := item["closed_day"]:
        status = item["status"]
        if status == "resolved":
            status = "resolved_on_time" if item["on_time"] else "resolved_late"
        flows += [(closed, status), (max(closed, due_passed), "due_passed_closed")]
    if "fee" in item:  # a dossier, not a step: the index's facts
        flows += fact_flows(item)
    return flows


def fact_flows(item: dict[str, Any]) -> list[tuple[str, str]]:
    flows = []
    if item["digitised"]:
        flows.append((item["received_day"], "digitised"))
    if item["fee"] in ("due", "exempt"):
        flows.append((item["received_day"], f"fee_{item['fee']}"))
    if item["paid"]:
        flows.append((item["paid_day"], f"paid_{item['paid']}"))
    if item["result_electronic"] and item["status"] == "resolved":
        flows.append((item["closed_day"], "result_electronic"))
    if item["rating"]:
        flows.append((item["rated_day"], f"rated_{item['rating']}"))
    return flows


Item = dict[str, Any]  # a work item (`work_items`): a dossier at a unit, or a step
SATISFIED = ("very_satisfied", "satisfied")


def _always(item: Item) -> bool:
    return True


def _resolved(item: Item) -> bool:
    return item["status"] == "resolved"


# measure -> (the dossier's day that puts it in a period, whether it counts in the denominator, whether it meets
# the numerator): `index.MEASURES` dossier by dossier, to show the dossiers behind a component (tested against them).
PER_DOSSIER: dict[str, tuple[str, Callable[[Item], bool], Callable[[Item], bool]]] = {
    "public_progress": ("received_day", _always, _always),
    "on_time": ("closed_day", _resolved, lambda i: bool(i["on_time"])),
    "online_filing": ("received_day", _always, lambda i: i["channel"] == "online"),
    "online_payment": ("paid_day", lambda i: bool(i["paid"]), lambda i: i["paid"] == "online"),
    "satisfied": ("rated_day", lambda i: bool(i["rating"]), lambda i: i["rating"] in SATISFIED),
    "digitised": ("received_day", _always, lambda i: bool(i["digitised"])),
    "electronic_result": ("closed_day", _resolved, lambda i: bool(i["result_electronic"])),
}


def shortfalls(item: Item) -> list[tuple[str, str]]:
    """(day, measure) of each index component whose denominator counts the dossier (its `recv` work item) and whose
    numerator does not, on the day that puts it in a period (`PER_DOSSIER`)."""
    return [(day, measure) for measure, (day_field, counts, meets) in PER_DOSSIER.items()
            if (day := item.get(day_field)) is not None and counts(item) and not meets(item)]


def short_slot(day: str) -> str:
    """The slot of a day's shortfalls: one per day of the month, so a row holds one day's (`projector.row_group`),
    and a day's filings rewrite that day's rows only."""
    return f"{SHORT}{day[8:]}"


def contributions(doc: dict[str, Any] | None) -> dict[Cell, int]:
    """Everything one dossier adds to the cells. The fold's inner loop (~40 cells a dossier), hence plain dicts
    and the slots named once per work item rather than a Counter and formatting per flow."""
    out: dict[Cell, int] = {}
    if doc is None:
        return out
    get = out.get
    units = catalogue().units
    procedure, channel = doc["procedure"], doc["channel"]
    breakdown_prefix, by_procedure = f"{procedure}.{channel}.", procedure_slot(procedure)
    for basis in BASES:
        ranked, total, recv = basis in RANKED_BASES, basis in TOTAL_BASES, basis == "recv"
        for unit, item in work_items(doc, basis):
            if total:
                known = units.get(unit)
                level = level_slot(known.level if known else "unknown")
            if recv:
                breakdown, dossier = breakdown_slot(unit), item
            for day, counter in item_flows(item):
                field = f"{basis}.{counter}"
                cell = (day, unit, field)
                out[cell] = get(cell, 0) + 1
                if ranked:
                    cell = (day, UNIT_MONTHS, f"{unit}.{field}")
                    out[cell] = get(cell, 0) + 1
                if total:
                    cell = (day, PROVINCE, field)
                    out[cell] = get(cell, 0) + 1
                    cell = (day, level, field)
                    out[cell] = get(cell, 0) + 1
                if recv:  # day x receiving unit x procedure x channel, and the same for the province
                    cell = (day, breakdown, breakdown_prefix + counter)
                    out[cell] = get(cell, 0) + 1
                    cell = (day, by_procedure, f"{channel}.{counter}")
                    out[cell] = get(cell, 0) + 1
    if doc["closed_day"] is None:
        out[(doc["due_date"], OPEN, open_entry(doc))] = 1
    for day, measure in shortfalls(dossier):
        out[(day, short_slot(day), f"{measure}|{doc['_id']}|{doc['receiving_unit']}|{doc['competent_unit']}")] = 1
    return out


def open_entry(doc: dict[str, Any]) -> str:
    """An open dossier as the overdue list shows it: `<code>|<unit holding it>|<procedure>|<step>` (the receiving
    unit until it is assigned; no step then). A move to another unit or step is a -1 here and a +1 there."""
    unit = doc.get("current_unit") or doc["receiving_unit"]
    step = doc.get("step")
    return f"{doc['_id']}|{unit}|{doc['procedure']}|{'' if step is None else step}"


def open_dossier(due_date: str, entry: str) -> dict[str, Any]:
    code, unit, procedure, step = entry.split("|")
    return {"code": code, "unit": unit, "procedure": procedure, "step": int(step) if step else None,
            "due_date": due_date}


def delta(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[Cell, int]:
    """The change one event makes to the rows; a moved date or unit is a -1 in one row and +1 in another."""
    change = contributions(after)
    if before is None:
        return change
    for cell, n in contributions(before).items():
        change[cell] = change.get(cell, 0) - n
    return {cell: n for cell, n in change.items() if n}


def figures(rows: Iterable[dict[str, Any]], basis: Basis, start: date, end: date,
            today: date | None = None) -> Summary:
    """Figures from rows: `rows` must include every row up to `end` of the units concerned (several rows of one
    day, one per partition, add up). In progress and overdue are as of `end`, or `today` when that is earlier."""
    lo, hi = start.isoformat(), end.isoformat()
    asof = min(end, today).isoformat() if today else hi
    flows: Counter[str] = Counter()
    running: Counter[str] = Counter()
    for row in rows:
        if row["day"] > hi:
            continue
        counters = row.get(basis) or {}
        if row["day"] <= asof:
            running.update(counters)
        if row["day"] >= lo:
            flows.update(counters)
    received = {c: flows[f"received_{c}"] for c in ("online", "direct", "postal")}
    closed = sum(running[c] for c in ("resolved_on_time", "resolved_late", "rejected", "withdrawn"))
    return Summary(
        received=sum(received.values()), received_online=received["online"], received_direct=received["direct"],
        received_postal=received["postal"], resolved=flows["resolved_on_time"] + flows["resolved_late"],
        resolved_on_time=flows["resolved_on_time"], resolved_late=flows["resolved_late"],
        rejected=flows["rejected"], withdrawn=flows["withdrawn"],
        in_progress=sum(running[f"received_{c}"] for c in ("online", "direct", "postal")) - closed,
        overdue=running["due_passed"] - running["due_passed_closed"],
    )



def facts(rows: Iterable[dict[str, Any]], basis: Basis, start: date, end: date) -> dict[str, int]:
    """The index's facts over [start, end] (flows, like `figures`' received and resolved)."""
    lo, hi = start.isoformat(), end.isoformat()
    flows: Counter[str] = Counter()
    for row in rows:
        if lo <= row["day"] <= hi:
            flows.update(row.get(basis) or {})
    return {fact: flows[fact] for fact in FACTS}


def cut_months(start: date, end: date) -> set[str]:
    """The months (YYYY-MM) a period starts or ends inside of: only their day rows tell flows in from out."""
    cut = set()
    if start.day != 1:
        cut.add(start.isoformat()[:7])
    if (end + timedelta(days=1)).day != 1:
        cut.add(end.isoformat()[:7])
    return cut


def ranking_rows(monthly: dict[str, dict[str, dict[str, dict[str, int]]]], cut_days: list[dict[str, Any]],
                 start: date, end: date) -> list[dict[str, Any]]:
    """Rows that give every unit's figures for [start, end]: one row per unit and whole month (dated on the
    month's first day, which is inside the period or before it), and the real day rows of the cut months.
    `monthly` is month -> unit -> basis -> counters (the `~units` rows)."""
    cut = cut_months(start, end)
    rows = [r for r in cut_days if r["day"][:7] in cut]
    for month, units in monthly.items():
        if month in cut or month > end.isoformat()[:7]:
            continue
        rows += [{"day": f"{month}-01", "unit": unit, **bases} for unit, bases in units.items()]
    return rows
