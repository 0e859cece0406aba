"""Intake over HTTP under wrk (a C load generator, so the client is not the bottleneck), beside a bare FastAPI
endpoint under the same load in the same run: the ceiling of one Python process serving HTTP on this machine.

    apt-get install wrk; uv run python benchmarks/bench_intake_wrk.py

Each request files a new dossier for a new citizen (unique reference and citizen id per request, generated in wrk's
Lua). Prints requests/s, p50/p99 latency and non-201 answers for both, and their ratio.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOKEN, environment, service  # noqa: E402

from lienthong.catalogue import catalogue  # noqa: E402
from lienthong_testkit.services import wait_ready  # noqa: E402

CONNECTIONS, THREADS, SECONDS = 64, 2, 15
BARE_PORT = 38091

BARE_APP = '''
from fastapi import FastAPI
from fastapi.responses import JSONResponse
import uvicorn

app = FastAPI()

@app.get("/readyz")
async def ready():
    return {"ok": True}

@app.post("/v1/dossiers")
async def file(body: dict):
    return JSONResponse({"dossier_code": "X", "received": len(body)}, status_code=201)

uvicorn.run(app, host="127.0.0.1", port=%d, log_config=None, access_log=False)
''' % BARE_PORT

LUA = r'''
local units = {%(units)s}
local thread_ids = 0
function setup(thread)
  thread:set("tid", thread_ids)
  thread_ids = thread_ids + 1
end
function init(args)
  n = 0
  math.randomseed(os.time() + tid * 7919)
end
request = function()
  n = n + 1
  local body = string.format('{"procedure_code":"HT-KS","channel":"online","receiving_unit":"%%s",' ..
    '"external_ref":"W-%(run)s-%%d-%%d","applicant":{"citizen_id":"038%%09d","full_name":"Nguyen Van Bench",' ..
    '"address":"Hac Thanh","residence_unit":"HACTHANH"},"documents":[{"kind":"to-khai","name":"t.pdf",' ..
    '"sha256":"%(a)s"},{"kind":"giay-chung-sinh","name":"g.pdf","sha256":"%(b)s"}]}',
    units[(n %% #units) + 1], tid, n, math.random(0, 999999999))
  return wrk.format("POST", "/v1/dossiers", {["Content-Type"] = "application/json",
    ["Authorization"] = "%(token)s"}, body)
end
'''


def wrk(url: str, script: Path) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50%"),
            "p99": ms("99%"), "failed": int(non_2xx.group(1)) if non_2xx else 0, "total": total}


@contextmanager
def bare_endpoint(directory: Path):
    app = directory / "bare.py"
    app.write_text(BARE_APP)
    log = directory / "bare.log"
    proc = subprocess.Popen([sys.executable, str(app)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        wait_ready("bare", f"http://127.0.0.1:{BARE_PORT}", log, timeout_s=30)
        yield f"http://127.0.0.1:{BARE_PORT}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    units = ", ".join(f'"{u.code}"' for u in catalogue().communes())
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "file.lua"
        script.write_text(LUA % {"units": units, "run": uuid.uuid4().hex[:6], "a": "a" * 64, "b": "b" * 64,
                                 "token": TOKEN["Authorization"]})
        with bare_endpoint(Path(tmp)) as bare:
            baseline = wrk(bare, script)
        with environment(), service("intake", 38081, f"bench_{uuid.uuid4().hex[:6]}", INTAKE_RATE_BURST="100000",
                                    INTAKE_RATE_PER_UNIT_PER_S="100000") as base:
            time.sleep(2)
            intake = wrk(base, script)
    print(f"| under wrk, {CONNECTIONS} connections, {THREADS} threads, {SECONDS} s (one run) | filings/s | p50 | p99 "
          "| not 201 |")
    print("|---|---|---|---|---|")
    for label, r in (("bare FastAPI endpoint (same body, no work)", baseline), ("intake (group commit)", intake)):
        print(f"| {label} | {r['rps']:.0f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['failed']} of {r['total']} |")
    print(f"| intake / bare | {intake['rps'] / baseline['rps']:.2f} | | | |")


if __name__ == "__main__":
    main()
