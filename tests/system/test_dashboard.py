"""The operators' dashboard in real headless Chromium, while the simulator drives intake, routing and stats as
separate processes on the real broker and store: live topic rates, province figures equal to the API, a chart,
a drill-down click. The screenshot is kept in test-artifacts/."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, time, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from lienthong.calendar import VN_TZ, is_working_day, today_vn
from lienthong_tools.simulation.run import SimClock, Simulator
from lienthong.topics import DOSSIER_LIFECYCLE, topics
from tests.integration.kafka_reader import wait_caught_up
from tests.integration.sinks import free_port
from lienthong.auth import SUBMIT
from tests.tokens import EVERYTHING, ISSUER, PORTAL

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google, which this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


def next_opening() -> datetime:
    day = today_vn() + timedelta(days=1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return datetime.combine(day, time(8, 0), VN_TZ)


@contextmanager
def service(name: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    log = (ARTIFACTS / f"{name}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", f"{name}.main"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **env, f"{name.upper()}_HTTP_PORT": str(port)})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def ready(base: str, timeout: float = 90) -> None:
    async with httpx.AsyncClient(headers=EVERYTHING, timeout=3) as http:
        for _ in range(int(timeout * 2)):
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise AssertionError(f"{base} did not become ready in {timeout}s (see test-artifacts/*.log)")


async def shown_figures(page, scope: str) -> dict[str, float | None]:
    shown = await page.eval_on_selector_all(f"{scope} dd", "els => Object.fromEntries(els.map(e => "
                                            "[e.dataset.key, e.dataset.value]))")
    return {k: float(v) if v else None for k, v in shown.items()}


async def refreshed(page, action) -> None:  # noqa: ANN001
    """Do `action`, then wait until the page has completed a refresh that started after it."""
    before = int(await page.evaluate("document.body.dataset.rounds || '0'"))
    await action()
    await page.wait_for_function(f"Number(document.body.dataset.rounds || 0) > {before}")


async def page_and_api(page, api: httpx.AsyncClient, scope: str, params: dict) -> tuple[dict, dict]:  # noqa: ANN001
    """The figures the page shows and the API's, read around the same refresh. Routing may still be answering the
    simulator's last outcomes, so a few rounds are allowed for the system to go quiet."""
    for _ in range(10):
        await refreshed(page, lambda: page.click("#period button[type=submit]"))
        shown, expected = await shown_figures(page, scope), (await api.get("/v1/stats/summary", params=params)).json()
        if shown == as_shown(expected):
            break
        await asyncio.sleep(1)
    return shown, expected


def _number(value: float | None) -> str:
    """As the page keeps a number in a data attribute (JavaScript's String of it)."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def as_shown(api: dict) -> dict[str, float | None]:
    return {k: None if api[k] is None else float(api[k]) for k in (
        "received", "received_online", "received_direct", "received_postal", "resolved", "resolved_on_time",
        "resolved_late", "in_progress", "overdue", "rejected", "withdrawn", "on_time_rate", "online_rate")}


async def test_dashboard_shows_the_province_live_while_the_simulator_runs(infra):
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium); .ci/run does")
    ARTIFACTS.mkdir(exist_ok=True)
    run = uuid.uuid4().hex[:6]
    env = {**infra.kafka.as_env(), "MONGODB_URI": infra.mongo.uri,
           "MONGODB_DATABASE": f"dashboard_{run}", "ROUTING_GROUP_ID": f"routing-{run}", "ROUTING_START_FROM": "latest",
           "STATS_GROUP_ID": f"stats-{run}", "STATS_DASHBOARD_SAMPLE_S": "1",
           **{f"{s}_LOG_LEVEL": "WARNING" for s in ("INTAKE", "ROUTING", "STATS")}}
    with ExitStack() as stack:
        intake, _routing, stats = (stack.enter_context(service(n, env)) for n in ("intake", "routing", "stats"))
        for base in (intake, _routing, stats):
            await ready(base)
        # Simulated time starts at the next working day's opening: counters are open whenever CI runs, and the
        # agencies' time budgets (from routing's due dates, which follow the real calendar) stay a step's days. A
        # fixed start date drifted away from the real one: after ten days no step completed within the run.
        clock = SimClock(speedup=600, start=next_opening())
        os.environ["SIMULATOR_TOKEN"] = ISSUER.issue("simulator", [SUBMIT], ["*"])
        simulator = Simulator(seed=11, intake_url=intake, kafka=infra.kafka, clock=clock, portal=PORTAL)
        simulation = asyncio.create_task(simulator.run(rate=4, duration_s=25))
        async with async_playwright() as pw, httpx.AsyncClient(headers=EVERYTHING, base_url=stats, timeout=30) as api:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="vi-VN",
                                          extra_http_headers=EVERYTHING)
            await page.goto(f"{stats}/dashboard")
            await page.wait_for_selector("body[data-loaded=true]", timeout=30_000)

            # Topics: one row per catalogue topic, and traffic visible while the simulator runs.
            await page.wait_for_function(f"document.querySelectorAll('#topics tbody tr').length == {len(topics())}")
            rows = await page.eval_on_selector_all("#topics tbody tr", "rs => rs.map(r => r.dataset.topic)")
            assert rows == [t.name for t in topics()]
            await page.wait_for_function(
                """() => [...document.querySelectorAll('#topics tbody tr')].some(r =>
                       parseFloat((r.querySelector('.in-rate').textContent || '0').replace(',', '.')) > 0)""",
                timeout=60_000)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)

            counts = await simulation
            assert counts["filed_http"] + counts["filed_kafka"] > 50, counts
            assert counts["outcome_completed"] > 0, counts
            await wait_caught_up(infra.kafka, f"stats-{run}", DOSSIER_LIFECYCLE.name)

            # Province: the page shows exactly what GET /v1/stats/summary answers.
            today = today_vn().isoformat()
            period = {"from": today[:8] + "01", "to": today}
            shown, api_now = await page_and_api(page, api, "#period-figures", period)
            assert api_now["received"] > 0
            assert shown == as_shown(api_now)

            # A chart rendered by the server, inlined as SVG with its series drawn.
            assert await page.locator("#timeseries-chart svg").count() == 1
            assert await page.locator("#timeseries-chart svg .series").count() >= 1
            assert await page.locator("#lag-chart svg").count() == 1

            # The service index in Vietnamese: the province's total and every component as the API scores them, the
            # units ranked by score, and a unit's score opened into its components.
            assert "Chỉ số phục vụ người dân, doanh nghiệp" in await page.inner_text("#index-title")
            for _ in range(10):
                await refreshed(page, lambda: page.click("#period button[type=submit]"))
                index = (await api.get("/v1/stats/index", params=period)).json()
                if await page.get_attribute("#index-total", "data-total") == _number(index["total"]):
                    break
            assert await page.get_attribute("#index-total", "data-total") == _number(index["total"])
            measured = {c["key"]: (c["numerator"], c["denominator"]) for g in index["groups"] for c in g["components"]}
            print("index components measured:", measured)
            # what every filing brings (payments, results and ratings depend on how far the simulated day got)
            assert all(measured[k][1] > 0 for k in ("public_progress", "online_filing", "digitised")), measured
            shown = await page.eval_on_selector_all("#index-province tbody tr", "rs => rs.map(r => "
                                                    "[r.dataset.component, r.dataset.points])")
            assert shown == [[c["key"], _number(c["points"])] for g in index["groups"] for c in g["components"]]
            by_score = (await api.get("/v1/stats/index/units", params=period)).json()
            best = page.locator("#index-ranking tbody tr").first
            assert await best.get_attribute("data-unit") == by_score[0]["unit"]
            await best.click()
            await page.wait_for_selector("#index-unit:not([hidden]) tbody tr")
            opened = await page.eval_on_selector_all("#index-unit tbody tr", "rs => rs.map(r => r.dataset.points)")
            assert opened == [_number(c["points"]) for g in by_score[0]["groups"] for c in g["components"]]
            # A component opened into the dossiers short of it, as the API lists them (the province's most short).
            components = [c for g in index["groups"] for c in g["components"]]
            worst = max(components, key=lambda c: c["denominator"] - c["numerator"])
            await page.click(f"#index-province tbody tr[data-component={worst['key']}]")
            await page.wait_for_selector(f"#index-dossiers[data-component={worst['key']}]:not([hidden])")
            behind = (await api.get("/v1/stats/index/dossiers", params={**period, "component": worst["key"]})).json()
            print("dossiers behind", worst["key"], ":", behind["count"], "of", behind["denominator"])
            assert behind["count"] == worst["denominator"] - worst["numerator"] > 0
            assert await page.get_attribute("#index-dossiers", "data-count") == str(behind["count"])
            listed = await page.eval_on_selector_all("#index-dossiers tbody tr",
                                                     "rs => rs.map(r => r.cells[0].textContent)")
            assert listed == [d["code"] for d in behind["dossiers"]]
            assert "hồ sơ chưa đạt" in await page.inner_text("#index-dossiers-title")
            assert "Mức độ hài lòng" in await page.inner_text("#index-province")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-index.png"), full_page=True)

            # Drill-down: clicking a unit of the ranking opens its figures, again equal to the API.
            first = page.locator("#ranking tbody tr").first
            unit = await first.get_attribute("data-unit")
            await first.click()
            await page.wait_for_selector("#unit-detail:not([hidden]) #unit-figures dd")
            shown, unit_api = await page_and_api(page, api, "#unit-figures", {**period, "unit": unit})
            assert shown == as_shown(unit_api)
            assert await page.locator("#unit-chart svg").count() == 1
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            await browser.close()
