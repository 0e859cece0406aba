"""`lienthong run` (what `make run` calls): infrastructure and the four services come up, answer /healthz,
/readyz and /metrics, the simulator's filings are told to their citizens through the run's own outbox, and SIGINT
(Ctrl-C) stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from lienthong_testkit.servers import free_ports
from tests.run_logs import why
from tests.tokens import EVERYTHING

pytestmark = pytest.mark.integration

SERVICES = ("intake", "routing", "notify", "stats")


def test_run_brings_everything_up_and_ctrl_c_stops_it(infra, tmp_path):
    # Ports free right now: fixed ones in the ephemeral range were once held by a client connection (routing could
    # not bind 48082 and the run stopped).
    first = free_ports(len(SERVICES) + 2)
    PORTS = {name: first + i for i, name in enumerate(SERVICES)}  # noqa: N806
    OUTBOX = first + len(SERVICES)  # noqa: N806
    # The outbox's SMTP port from the same block: one it chose itself once was stats' (stats could not bind, exited).
    OUTBOX_SMTP = first + len(SERVICES) + 1  # noqa: N806
    env = {
        **os.environ,
        **infra.kafka.as_env(),
        "MONGODB_URI": infra.mongo.uri,
        "MONGODB_DATABASE": infra.mongo.database,
        **{f"{name.upper()}_HTTP_PORT": str(port) for name, port in PORTS.items()},
        "INTAKE_URL": f"http://127.0.0.1:{PORTS['intake']}",  # the gentle simulator files to this run's intake
        "LIENTHONG_OUTBOX_PORT": str(OUTBOX),
        "LIENTHONG_OUTBOX_SMTP_PORT": str(OUTBOX_SMTP),
    }
    for name in ("NOTIFY_SMTP_HOST", "NOTIFY_SMS_GATEWAY_URL"):  # a relay of one's own would replace the outbox
        env.pop(name, None)
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "lienthong_tools.cli", "--env", "test", "run"], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        ready = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(ready) < len(PORTS):
            for name, port in PORTS.items():
                try:
                    resp = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                    if resp.status_code == 200:
                        ready[name] = resp.json()
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        assert set(ready) == set(PORTS), why(tmp_path / "run.log")
        for name, port in PORTS.items():
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok", "service": name}
            assert "python_info" in httpx.get(f"http://127.0.0.1:{port}/metrics", headers=EVERYTHING).text
        assert ready["intake"]["checks"] == {"kafka": "ok", "mongo": "ok"}
        # Intake files under the province-sized catalogue the run imported (or one imported before it).
        procedures = httpx.get(f"http://127.0.0.1:{PORTS['intake']}/v1/procedures", headers=EVERYTHING).json()
        assert len(procedures) >= 2_223 and "catalogue: version " in (tmp_path / "run.log").read_text()
        # Notifications are delivered, to the outbox that `lienthong run` keeps (mail catcher and SMS gateway).
        outbox, messages = f"http://127.0.0.1:{OUTBOX}", []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not messages:
            messages = httpx.get(f"{outbox}/messages", timeout=5).json()
            time.sleep(1)
        assert messages, "no notification reached the outbox in 90 s\n" + why(tmp_path / "run.log")
        assert {m["channel"] for m in messages} <= {"email", "sms"} and all(m["to"] and m["body"] for m in messages)
        assert "Hộp thư thử nghiệm" in httpx.get(outbox + "/", timeout=5).text
        assert httpx.post(f"{outbox}/v1/sms", json={"to": "x", "text": "forged"}).status_code == 401  # notify only
        status = subprocess.run([sys.executable, "-m", "lienthong_tools.cli", "--env", "test", "infra", "status"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    leftovers = subprocess.run(["ps", "-ww", "-eo", "pgid,args"], capture_output=True, text=True).stdout
    assert not [line for line in leftovers.splitlines() if line.strip().startswith(str(proc.pid) + " ")]
