"""The canary: a simulated day of traffic through `lienthong run`'s services (what `make run` starts), then a search
of every log line, every topic's segment files and every DLQ in the broker's data directory, the document store's
files and every webhook body for the applicants' CCCDs, names, phones and e-mails.

The simulator's filings are a function of its seed, so the test knows every applicant it filed (some over HTTP, some
over Kafka, sealed to intake's key as a counter application does); a canary dossier with an e-mail address is filed
besides. No file may hold any of them: not one topic is exempt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from lienthong.auth import SUBMIT
from lienthong_tools.simulation.plan import add_office_time, filings
from lienthong_testkit.servers import free_ports
from tests.integration.sinks import HttpSink, SmtpSink
from tests.run_logs import why
from tests.tokens import EVERYTHING, ISSUER

pytestmark = pytest.mark.integration

SERVICES = ("intake", "routing", "notify", "stats")
SEED, RATE, DURATION_S, SPEEDUP = 11, 3.0, 40.0, 2160.0  # 40 real seconds = a simulated day
CANARY = {"citizen_id": "038166554433", "full_name": "Hoàng Thị Chim Hoàng Yến", "phone": "0966554433",
          "email": "chim.hoang.yen@example.vn", "address": "Số 9 ngõ Canary, phường Hạc Thành",
          "residence_unit": "HACTHANH"}


def forms(value: str) -> set[bytes]:
    return {value.encode(), json.dumps(value).strip('"').encode()}


def needles(applicants: list[dict]) -> dict[bytes, str]:
    """Byte pattern -> what it is (never the value itself in a failure message)."""
    found: dict[bytes, str] = {}
    for i, a in enumerate(applicants):
        for field in ("citizen_id", "full_name", "phone", "email", "address"):
            if a.get(field):
                found.update({f: f"applicant {i} {field}" for f in forms(a[field])})
    return found


def leaks(root: Path, patterns: dict[bytes, str]) -> list[str]:
    out = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix in (".index", ".timeindex"):  # offsets only, preallocated 10 MB each: nothing to read
            continue
        data = path.read_bytes()
        out += [f"{path.relative_to(root)}: {what}" for pattern, what in patterns.items() if pattern in data]
    return out


def test_a_simulated_day_leaves_no_personal_data_in_logs_topics_dlqs_store_or_webhooks(infra, tmp_path):
    if infra.local is None:
        pytest.fail("the canary reads the broker's and the store's files: it needs the deploy/local servers")
    smtp, sink = SmtpSink(), HttpSink()
    smtp_port, base = smtp.start(), sink.start()
    first = free_ports(len(SERVICES))  # free now: fixed ports in the ephemeral range may be a client's
    PORTS = {name: first + i for i, name in enumerate(SERVICES)}  # noqa: N806
    env = {
        **os.environ, **infra.kafka.as_env(), "MONGODB_URI": infra.mongo.uri, "MONGODB_DATABASE": infra.mongo.database,
        **{f"{name.upper()}_HTTP_PORT": str(port) for name, port in PORTS.items()},
        "NOTIFY_SMTP_PORT": str(smtp_port), "NOTIFY_SMS_GATEWAY_URL": f"{base}/sms",
        "NOTIFY_ALLOW_HTTP_WEBHOOKS": "true", "NOTIFY_ALLOW_PRIVATE_WEBHOOKS": "true",
        "NOTIFY_SUBSCRIPTIONS_REFRESH_S": "1",
        # Only this day's traffic: not the backlog earlier tests left on the session's lifecycle topic.
        "NOTIFY_GROUP_ID": f"notify-canary-{uuid.uuid4().hex[:6]}", "NOTIFY_START_FROM": "latest",
        "ROUTING_GROUP_ID": f"routing-canary-{uuid.uuid4().hex[:6]}", "ROUTING_START_FROM": "latest",
    }
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "lienthong_tools.cli", "--env", "test", "run", "--simulate-rate", "0"],
                               env=env, stdout=out, stderr=out, start_new_session=True)
    start = add_office_time(datetime(2026, 3, 2, 0, 0, tzinfo=UTC), timedelta(0))  # a Monday's opening
    try:
        began = time.monotonic()
        _wait_ready(log, PORTS)
        print(f"services ready in {time.monotonic() - began:.1f}s")
        intake, notify = (f"http://127.0.0.1:{PORTS[s]}" for s in ("intake", "notify"))
        hook = httpx.post(f"{notify}/v1/subscriptions", json={"url": f"{base}/hooks/all"}, headers=EVERYTHING)
        assert hook.status_code == 201, hook.text
        time.sleep(3)  # notify re-reads subscriptions every second; the fresh groups get their partitions
        canary = httpx.post(f"{intake}/v1/dossiers", headers=EVERYTHING, json={
            "procedure_code": "HT-KS", "channel": "online", "receiving_unit": "HACTHANH", "external_ref": "CANARY-1",
            "applicant": CANARY, "documents": [{"kind": "to-khai", "name": "t.pdf", "sha256": "a" * 64},
                                                {"kind": "giay-chung-sinh", "name": "c.pdf", "sha256": "b" * 64}]})
        assert canary.status_code == 201, canary.text
        simulator = {**env, **infra.local.kafka.client_settings("simulator", infra.kafka).as_env(),
                     "SIMULATOR_TOKEN": ISSUER.issue("portal", [SUBMIT], ["*"])}
        sim = subprocess.run([sys.executable, "-m", "lienthong_tools.cli", "simulate", "--rate", str(RATE), "--duration",
                              str(DURATION_S), "--speedup", str(SPEEDUP), "--seed", str(SEED), "--start",
                              start.isoformat(), "--intake-url", intake], env=simulator, capture_output=True,
                             text=True, timeout=300)
        assert sim.returncode == 0, sim.stderr[-3000:]
        counts = json.loads(sim.stdout.strip().splitlines()[-1])
        print(f"simulated day done at {time.monotonic() - began:.1f}s: {counts}")
        _wait_for(lambda: smtp.to(CANARY["email"]) and len(sink.to("/hooks/all")) >= counts.get("filed_http", 0) + counts.get("filed_kafka", 0), 120)
        print(f"notified at {time.monotonic() - began:.1f}s")
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=90) == 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        smtp.stop()
        sink.stop()
    applicants = [CANARY, *(f.body["applicant"] for f in filings(SEED, RATE, DURATION_S, start, SPEEDUP))]
    patterns = needles(applicants)
    assert len(applicants) > 50 and smtp.to(CANARY["email"])  # the canary was really told, by e-mail
    state = infra.local.kafka.state
    found = {
        "service and simulator logs": leaks(tmp_path, patterns),
        "server logs": [f"{p.name}: {w}" for p in state.glob("*.log") for pat, w in patterns.items()
                        if pat in p.read_bytes()],
        "topics and DLQs": leaks(state / "kafka" / "data", patterns),
        "document store files": leaks(state / "ferretdb" / "data", patterns),
        "webhook bodies": [f"{r.path}: {w}" for r in sink.to("/hooks/all") for pat, w in patterns.items()
                           if pat in r.body],
    }
    assert found == {k: [] for k in found}, json.dumps(found, indent=1, ensure_ascii=False)[:3000]
    assert counts.get("filed_kafka", 0) > 0  # the agency edge was exercised too
    # The search finds plaintext where there is some: the simulator's own plan, written out, is caught.
    (tmp_path / "plan.json").write_text(json.dumps(applicants, ensure_ascii=False), encoding="utf-8")
    assert len(leaks(tmp_path, patterns)) >= len(patterns) // 2
    assert len(sink.to("/hooks/all")) >= 50  # the webhook really carried the day's events


def _wait_ready(log: Path, ports: dict[str, int]) -> None:
    def ready() -> bool:
        try:
            return all(httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200 for p in ports.values())
        except httpx.HTTPError:
            return False

    _wait_for(ready, 120, lambda: why(log))


def _wait_for(check, timeout: float, explain=lambda: "") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached in {timeout}s\n{explain()}")
        time.sleep(0.5)
