"""Intake over HTTP under wrk (a C load generator, so the client is not the bottleneck), beside a bare FastAPI
endpoint under the same load in the same run: the ceiling of one Python process serving HTTP on this machine.

    apt-get install wrk; uv run python benchmarks/bench_intake_wrk.py

Each request files a new dossier for a new citizen (unique reference and citizen id per request, generated in wrk's
Lua). Prints requests/s, p50/p99 latency and non-201 answers for both, and their ratio; then the CPU a filing cost
each process in that run and what two cores allow at those costs; then intake at fixed offered rates
(`WRK_PACED_RATES`, default 400,600,800,1000 filings/s, 10 s each, the same 64 connections): wrk's Lua sends each
request at its slot on a fixed schedule (wrk's `delay()`), so the latency is that of a given load, not of 64 clients
sending as fast as answers come back; requests sent more than 1 ms after their slot (no connection was free) are
counted, since their wait is not in wrk's latency.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import TOKEN, CpuMeter, at_most_per_s, environment, our_processes, service  # noqa: E402

from lienthong.catalogue import catalogue  # noqa: E402
from lienthong_testkit.services import wait_ready  # noqa: E402

CONNECTIONS, THREADS, SECONDS = 64, 2, 15
PACED_RATES = [int(r) for r in os.environ.get("WRK_PACED_RATES", "400,600,800,1000").split(",") if r]
PACED_SECONDS = 10
TARGET_P99_S = 0.05  # #17: p99 < 50 ms at 64 connections
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

# Appended for a paced run: each thread sends its share of `rate` on a fixed schedule of slots (LuaJIT's FFI for a
# monotonic clock in milliseconds; wrk's `delay()` says how long to wait before a connection's next request).
PACED_LUA = r'''
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } lt_timespec;
int clock_gettime(int clk_id, lt_timespec *tp);
]]
local clock = ffi.new("lt_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local threads = {}
local setup_filing = setup
function setup(thread)
  setup_filing(thread)
  table.insert(threads, thread)
end
local init_filing = init
function init(args)
  init_filing(args)
  interval = 1000 * %(threads)d / %(rate)d
  next_slot = now_ms() + 100 + tid * interval / %(threads)d
  late = 0
end
function delay()
  local now, slot = now_ms(), next_slot
  next_slot = next_slot + interval
  if slot < now - 1 then
    late = late + 1
  end
  return math.max(0, math.floor(slot - now))
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("late") end
  io.write(string.format("late sends: %%d\n", total))
end
'''


def wrk(url: str, script: Path, seconds: int = SECONDS) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    late = re.search(r"late sends: (\d+)", out)

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50%"),
            "p99": ms("99%"), "failed": int(non_2xx.group(1)) if non_2xx else 0, "total": total,
            "late": int(late.group(1)) if late else 0,
            "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


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

        def filing() -> str:  # references of a run of their own: a reused one would be answered 200, not filed
            return LUA % {"units": units, "run": uuid.uuid4().hex[:6], "a": "a" * 64, "b": "b" * 64,
                          "token": TOKEN["Authorization"]}

        script.write_text(filing())
        with bare_endpoint(Path(tmp)) as bare:
            baseline = wrk(bare, script)
        paced = {}
        with environment() as servers, service("intake", 38081, f"bench_{uuid.uuid4().hex[:6]}",
                                               INTAKE_RATE_BURST="100000", INTAKE_RATE_PER_UNIT_PER_S="100000") as base:
            time.sleep(2)
            cpu = CpuMeter({name: pid for name, pid in our_processes(servers).items() if name != "benchmark"})
            cpu.start()
            intake = wrk(base, script)
            cpu.stop()
            for rate in PACED_RATES:
                paced_script = Path(tmp) / f"paced-{rate}.lua"
                paced_script.write_text(filing() + PACED_LUA % {"threads": THREADS, "rate": rate})
                paced[rate] = wrk(base, paced_script, PACED_SECONDS)
    print(f"| under wrk, {CONNECTIONS} connections, {THREADS} threads, {SECONDS} s (one run) | filings/s | p50 | p99 "
          "| not 201 |")
    print("|---|---|---|---|---|")
    for label, r in (("bare FastAPI endpoint (same body, no work)", baseline), ("intake (group commit)", intake)):
        print(f"| {label} | {r['rps']:.0f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['failed']} of {r['total']} |")
    print(f"| intake / bare | {intake['rps'] / baseline['rps']:.2f} | | | |")
    cpu.used["wrk"] = intake["cpu_s"]  # a child of this process: from its resource usage
    budget(cpu, intake["total"])
    if paced:
        print(f"\n| intake at a fixed offered rate, {CONNECTIONS} connections, {PACED_SECONDS} s each | filings/s "
              "| p50 | p99 | not 201 | sent late (> 1 ms after their slot) |")
        print("|---|---|---|---|---|---|")
        for rate, r in paced.items():
            print(f"| {rate}/s offered | {r['rps']:.0f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | "
                  f"{r['failed']} of {r['total']} | {r['late']} |")


def budget(cpu: CpuMeter, filings: int) -> None:
    """The CPU a filing cost each process under wrk, and what the machine's cores allow at those costs."""
    each = cpu.ms_each(filings)
    total = sum(each.values())
    print(f"\nCPU per filing in the run above: {cpu.listed(each)}; {total:.2f} ms in all. At these costs "
          f"{os.cpu_count()} cores complete at most {at_most_per_s(total):,.0f} filings/s; a p99 under "
          f"{TARGET_P99_S * 1000:.0f} ms with {CONNECTIONS} connections always busy needs at least "
          f"{CONNECTIONS / TARGET_P99_S:,.0f}/s (Little's law, every filing answered at exactly the p99).")


if __name__ == "__main__":
    main()
