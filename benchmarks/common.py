"""Shared by the benchmarks: a private local environment (own ports, own state) and a service subprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from lienthong.auth import OPS_READ, OPT_OUT, STATS_READ, SUBMIT, SUBSCRIBE, LocalIssuer
from lienthong_tools.infra.environment import Environment
from lienthong_tools.infra.paths import state_dir
from lienthong.settings import KafkaSettings, MongoSettings
from lienthong_testkit.services import service_process, wait_ready

KAFKA = "127.0.0.1:39092"
MONGO = "mongodb://127.0.0.1:37017/"


# Bearer tokens, like any client: the services the benchmarks start trust this issuer (kept apart from the bench
# environment's state, which benchmarks wipe).
ISSUER = LocalIssuer(state_dir("bench-auth"))
TOKEN = {"Authorization": "Bearer " + ISSUER.issue("bench", [SUBMIT, SUBSCRIBE, OPT_OUT, STATS_READ, OPS_READ], ["*"],
                                                   ttl_s=24 * 3600)}


def _environment() -> Environment:
    # BENCH_ENV: a benchmark that must start from empty topics names a state of its own (same ports: benchmarks
    # run one after another).
    return Environment.from_settings(KafkaSettings(bootstrap_servers=KAFKA), MongoSettings(uri=MONGO),
                                     name=os.environ.get("BENCH_ENV", "bench"))


def kafka_as(client: str = "admin") -> KafkaSettings:
    """A registered client's settings on the benchmark broker (SASL/SCRAM, like every client)."""
    return _environment().kafka.client_settings(client, KafkaSettings(bootstrap_servers=KAFKA))


@contextmanager
def environment() -> Iterator[Environment]:
    env = _environment()
    env.up()
    try:
        yield env
    finally:
        env.down()


@contextmanager
def service(name: str, port: int, database: str, **extra_env: str) -> Iterator[str]:
    with services(name, [port], database, **extra_env) as bases:
        yield bases[0]


@contextmanager
def services(name: str, ports: list[int], database: str, **extra_env: str) -> Iterator[list[str]]:
    """Instances of one service, one per port, started together (one consumer group if they share its id)."""
    with ExitStack() as started:
        procs = [started.enter_context(_launch(name, port, database, **extra_env)) for port in ports]
        for base, log in procs:
            wait_ready(name, base, log, timeout_s=60)
        yield [base for base, _ in procs]


@contextmanager
def _launch(name: str, port: int, database: str, **extra_env: str) -> Iterator[tuple[str, Path]]:
    env = {
        **os.environ,
        **kafka_as(name).as_env(),
        **ISSUER.env(),
        "MONGODB_URI": MONGO,
        "MONGODB_DATABASE": database,
        f"{name.upper()}_HTTP_PORT": str(port),
        f"{name.upper()}_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        **extra_env,
    }
    base = f"http://127.0.0.1:{port}"
    log = Path(f"/tmp/bench-{name}-{port}.log")
    log.unlink(missing_ok=True)
    with service_process(name, env, log):
        yield base, log


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def at_most_per_s(ms_each: float) -> float:
    """Units of work a second the machine's cores complete at most, at `ms_each` of CPU per unit."""
    return (os.cpu_count() or 1) * 1000 / ms_each


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux `/proc/<pid>/stat`, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _services_running() -> Iterator[tuple[str, int]]:
    """(service, pid) of every `python -m <service>.main` process on the machine."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if b"-m" in argv[:-1] and argv[argv.index(b"-m") + 1].endswith(b".main"):
            yield argv[argv.index(b"-m") + 1].decode().removesuffix(".main"), int(proc.name)


def service_pids(name: str) -> list[int]:
    """The pids of the running instances of a service."""
    return [pid for service, pid in _services_running() if service == name]


def our_processes(env: Environment) -> dict[str, int]:
    """The pids of this benchmark's processes: its servers, the services it started (one instance each) and
    itself (load generator, agencies, observers)."""
    pids = {"kafka": env.kafka.pid(), "ferretdb": env.mongo.pid(), "benchmark": os.getpid(),
            **dict(_services_running())}
    return {name: pid for name, pid in pids.items() if pid is not None}


class CpuMeter:
    """CPU seconds each process uses between `start` and `stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self._at = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        self.used = {name: cpu_seconds(pid) - self._at[name] for name, pid in self.pids.items()}

    def ms_each(self, count: int) -> dict[str, float]:
        """Milliseconds of CPU each process spent per unit of work (`count` units in the measured time)."""
        return {name: seconds * 1000 / count for name, seconds in self.used.items()}

    @staticmethod
    def listed(ms: dict[str, float], unit: str = "ms") -> str:
        """`intake 0.32 ms, ferretdb 0.25 ms, ...` (or in `us`, `stats 61.7 us, ...`), the largest first."""
        scale, digits = {"ms": (1, 2), "us": (1000, 1)}[unit]
        return ", ".join(f"{name} {each * scale:.{digits}f} {unit}"
                         for name, each in sorted(ms.items(), key=lambda kv: -kv[1]))

    def table(self, per: int, what: str) -> str:
        """A Markdown table: CPU seconds per process, per `what` (ms) and share of the whole."""
        total = sum(self.used.values())
        lines = [f"| process | CPU s | ms per {what} | share |", "|---|---|---|---|"]
        for name, seconds in sorted(self.used.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {seconds:.1f} | {seconds * 1000 / per:.1f} | {seconds / total:.0%} |")
        lines.append(f"| all | {total:.1f} | {total * 1000 / per:.1f} | |")
        return "\n".join(lines)


def store_commands(base: str) -> dict[tuple[str, str], tuple[float, float]]:
    """A service's store commands so far, from its /metrics: (command, collection) -> (count, seconds)."""
    out: dict[tuple[str, str], list[float]] = {}
    for line in httpx.get(f"{base}/metrics", headers=TOKEN, timeout=10).text.splitlines():
        for metric, at in (("lienthong_store_commands_total{", 0), ("lienthong_store_command_seconds_total{", 1)):
            if line.startswith(metric):
                labels = dict(part.split("=", 1) for part in line[len(metric):line.index("}")].split(","))
                key = (labels["command"].strip('"'), labels["collection"].strip('"'))
                out.setdefault(key, [0.0, 0.0])[at] = float(line.rsplit(" ", 1)[1])
    return {key: (count, seconds) for key, (count, seconds) in out.items()}


def store_table(before: dict[str, dict], after: dict[str, dict], per: int, what: str) -> str:
    """Store commands each service sent between two `store_commands` readings, per `what`, by the store's time."""
    rows = []
    for service, now in after.items():
        for key, (count, seconds) in now.items():
            count0, seconds0 = before.get(service, {}).get(key, (0.0, 0.0))
            if count > count0:
                rows.append((seconds - seconds0, service, *key, count - count0))
    lines = [f"| service | command | collection | per {what} | store ms per {what} |", "|---|---|---|---|---|"]
    for seconds, service, command, collection, count in sorted(rows, reverse=True):
        lines.append(f"| {service} | {command} | {collection or '-'} | {count / per:.2f} | {seconds * 1000 / per:.2f} |")
    total = sum(r[-1] for r in rows)
    lines.append(f"| all | | | {total / per:.2f} | {sum(r[0] for r in rows) * 1000 / per:.2f} |")
    return "\n".join(lines)

