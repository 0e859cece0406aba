"""Start, check and stop the local Kafka broker and FerretDB as background processes.

Each server writes its output to <state>/<name>.log and its pid to <state>/<name>.pid, runs in its own
process group (so stopping it leaves no orphan), and is only started when nothing healthy already answers at the
configured address. Addresses off this machine are never started, only checked: that is how the services point at
an existing cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lienthong.identity import ADMIN, provision_plan, registry
from lienthong_tools.infra import artifacts
from lienthong_tools.infra.tls import BrokerTls, LocalCA
from lienthong.settings import KafkaSettings

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def is_local(host: str) -> bool:
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class PortTaken(RuntimeError):
    """Another program bound a port of ours between the check that it was free and the server's bind: the server
    can start on other ports."""


@dataclass
class LocalServer:
    name: str
    host: str
    port: int
    state: Path
    log_start: int = field(default=0, init=False, repr=False)  # where this launch's output begins in the log

    @property
    def pid_file(self) -> Path:
        return self.state / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state / f"{self.name}.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def pid(self) -> int | None:
        """The pid of our running server, whatever address it was started on."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
            return None
        except PermissionError:
            pass
        return pid

    def running_address(self) -> str | None:
        try:
            return self.pid_file.read_text().split()[1]
        except (FileNotFoundError, IndexError):
            return None

    async def healthy(self) -> bool:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Fetch/build artefacts and write configuration; must be idempotent."""

    def start(self) -> str:
        outcome = self.launch()
        self.settle()
        return outcome

    def launch(self) -> str:
        """Start the process unless it already runs, without waiting for it (a KRaft node answers only once a
        majority of its cluster's controllers runs)."""
        if asyncio.run(self.healthy()):
            return "already running"
        if not is_local(self.host):
            raise RuntimeError(f"{self.name} at {self.host}:{self.port} does not answer (not local: not started)")
        if self.pid() is not None and self.running_address() != self.address:
            raise RuntimeError(
                f"{self.name} of this environment is running on {self.running_address()}, not {self.address}: "
                "run `lienthong infra down` with the settings it was started with first"
            )
        if self.pid() is None and not self._port_frees_up():
            raise RuntimeError(f"a port of {self.host}:{'/'.join(map(str, self.ports))} is taken by another program; "
                               "stop it or change the port")
        if self.pid() is None:
            self.prepare()
            self.log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
            with self.log_file.open("ab") as log:
                proc = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.state, start_new_session=True,
                )
            self.pid_file.write_text(f"{proc.pid} {self.address}\n")
            return "started"
        return "running"

    def settle(self) -> None:
        """Wait until the server answers, then do what must follow its start."""
        self._wait_healthy()
        self.after_start()

    def after_start(self) -> None:
        """What must happen once the server answers (Kafka: its ACLs)."""

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the server listens on."""
        return (self.port,)

    def _port_frees_up(self, seconds: float = 15.0) -> bool:
        """A server that is shutting down (a previous run's) still holds its ports for a moment."""
        deadline = time.monotonic() + seconds
        while any(port_open(self.host, port) for port in self.ports):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "address already in use" in self.since_launch().lower():  # a broken node may keep running
                raise PortTaken(f"{self.name}: a port of {self.address} was taken before it could bind it; see "
                                f"{self.log_file}")
            if self.pid() is None:
                raise RuntimeError(f"{self.name} exited during start-up; last lines of {self.log_file}:\n{self.tail()}")
            if asyncio.run(self.healthy()):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not healthy after {START_TIMEOUT_S:.0f}s; see {self.log_file}:\n{self.tail()}")

    def stop(self) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return "stopped"

    def kill(self) -> None:
        """SIGKILL, as a crash would (fault tests); `start` brings it back on the same data."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"{self.name} is not running")
        os.killpg(pid, signal.SIGKILL)
        while _alive(pid):  # reaped, so the pid file no longer names a live process
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def since_launch(self) -> str:
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


class Credentials:
    """A local environment's passwords, one per principal, in a file only its owner can read. Production keeps
    them in its own secret store; the services read theirs from KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def ensure(self, names: list[str]) -> dict[str, str]:
        """Every name's password, generating the missing ones."""
        known = self.read()
        missing = [n for n in names if n not in known]
        if missing:
            known.update({n: secrets.token_urlsafe(24) for n in missing})
            self.write(known)
        return known

    def write(self, passwords: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(passwords, indent=1, sort_keys=True))
        tmp.replace(self.path)


def broker_security(admin: str, tls: BrokerTls) -> list[str]:
    """The security settings of every broker we configure (`infra up`'s and docker-compose's), listeners
    named CLIENT and CONTROLLER."""
    return [
        # Every connection authenticates: clients with SCRAM over TLS (credentials in the metadata log, so
        # users come and go at run time; TLS keeps passwords' exchanges and records off the wire in clear);
        # the controller listener with PLAIN, whose one user is static (a controller needs it before any
        # metadata is loaded), on the controllers' own addresses.
        "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_SSL",
        *tls.properties(),
        "sasl.mechanism.controller.protocol=PLAIN",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain."
        f'PlainLoginModule required username="{ADMIN}" password="{admin}" user_{ADMIN}="{admin}";',
        "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram."
        f'ScramLoginModule required username="{ADMIN}" password="{admin}";',
        # A resource without an ACL is closed to everyone but the super user.
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN}",
    ]


def write_secrets_directory(directory: Path) -> Path:
    """For a broker that `infra up` does not start (docker-compose's), two sets of secrets:
    - `<dir>/clients/<client>`: one password per registered client (mode 600; services read theirs through
      KAFKA_SASL_PASSWORD_FILE);
    - `<dir>/broker/`: `admin`'s password, the broker's security settings (`broker-security.properties`), the
      plan Provision.java applies as admin (`provision.plan`: every SCRAM user and ACL), and a local CA with the
      broker's TLS keystore for the names `kafka` and `localhost` (`ca.pem` also goes to `<dir>/clients/`).
      Readable by the broker's own user (another uid than ours): mount it into the broker and its jobs only,
      never into a service.
    A password already there is kept, so running it again changes nobody's. Returns the plan's path."""
    clients, broker = directory / "clients", directory / "broker"

    def secret(path: Path, mode: int) -> str:
        if not path.exists():
            path.touch(mode=mode)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def write(path: Path, text: str) -> None:
        path.touch(mode=0o644)
        path.write_text(text)

    clients.mkdir(parents=True, exist_ok=True)
    broker.mkdir(parents=True, exist_ok=True)
    admin = secret(broker / ADMIN, 0o644)
    passwords = {c.name: secret(clients / c.name, 0o600) for c in registry().clients}
    plan = broker / "provision.plan"
    write(plan, provision_plan(registry().clients, passwords) + "\n")
    ca = LocalCA(broker)  # the CA's key stays 600 (the broker never needs it)
    tls = ca.broker(("kafka", "localhost", "127.0.0.1"))
    tls.keystore.chmod(0o644)  # the broker runs as another uid than this job
    write(clients / "ca.pem", ca.ca_file.read_text())
    write(broker / "broker-security.properties", "\n".join(broker_security(admin, tls)) + "\n")
    return plan


def kraft_cluster_id() -> str:
    """A random cluster id as Kafka's `random-uuid` makes them: URL-safe base64 of a UUID that never starts with
    `-` (the storage tool would read it as an option: `format -t -79u...` failed about one start in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child (a zombie still answers kill 0).
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class LocalKafka(LocalServer):
    """Node `node_id` of a KRaft cluster of `cluster_size` combined broker+controller nodes. Node i listens for
    clients on base+2(i-1) and as a controller on base+2(i-1)+1, base being node 1's port: one node is
    127.0.0.1:19092 (+19093), three are 19092, 19094, 19096. From three nodes on, every topic has three replicas
    and needs two in sync to acknowledge a write (acks=all), so one node may die without losing or refusing
    anything."""

    node_id: int = 1
    cluster_size: int = 1
    heap = "768m"
    authenticate = True  # False only for PlaintextKafka, the benchmark's measure of what SASL costs

    @property
    def base_port(self) -> int:
        return self.port - 2 * (self.node_id - 1)

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        """Every node's client address: what the services should be given."""
        return ",".join(f"{self.host}:{self.base_port + 2 * i}" for i in range(self.cluster_size))

    @property
    def replication(self) -> int:
        return min(3, self.cluster_size)

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port)

    @property
    def directory(self) -> Path:
        return self.state / self.name

    @property
    def properties(self) -> Path:
        return self.directory / "server.properties"

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.state / "credentials.json")

    @property
    def ca(self) -> LocalCA:
        """The environment's CA: clients trust `ca.ca_file` (KAFKA_SSL_CAFILE)."""
        return LocalCA(self.state / "tls")

    def prepare(self) -> None:
        self.libs = artifacts.kafka_classpath()
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        h, p, c = self.host, self.port, self.controller_port
        voters = ",".join(f"{i}@{h}:{self.base_port + 2 * (i - 1) + 1}" for i in range(1, self.cluster_size + 1))
        replicas, in_sync = self.replication, min(2, self.replication)
        passwords = self.credentials.ensure([ADMIN, *(client.name for client in registry().clients)])
        admin = passwords[ADMIN]
        self.properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    f"controller.quorum.voters={voters}",
                    f"listeners=CLIENT://{h}:{p},CONTROLLER://{h}:{c}",
                    f"advertised.listeners=CLIENT://{h}:{p}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=CLIENT",
                    *(broker_security(admin, self.ca.broker((h, "localhost"))) if self.authenticate else
                      ["listener.security.protocol.map=CONTROLLER:PLAINTEXT,CLIENT:PLAINTEXT"]),
                    f"log.dirs={data}",
                    "num.partitions=6",
                    "auto.create.topics.enable=false",
                    f"default.replication.factor={replicas}",
                    f"min.insync.replicas={in_sync}",
                    f"offsets.topic.replication.factor={replicas}",
                    "offsets.topic.num.partitions=12",
                    f"transaction.state.log.replication.factor={replicas}",
                    f"transaction.state.log.min.isr={in_sync}",
                    f"share.coordinator.state.topic.replication.factor={replicas}",
                    f"share.coordinator.state.topic.min.isr={in_sync}",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        (self.directory / "log4j2.properties").write_text(
            "rootLogger.level=INFO\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\nappender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=WARN\n"
            "logger.apache.name=org.apache.kafka\nlogger.apache.level=WARN\n"
            "logger.state.name=state.change.logger\nlogger.state.level=WARN\n"
        )
        if not (data / "meta.properties").exists():
            cluster_id = self._cluster_id()
            # KIP-900: the SCRAM credentials go into the first metadata records, so every registered client can
            # connect from the first start; their ACLs follow once the broker answers (`after_start`).
            scram = [arg for name, password in passwords.items() if self.authenticate
                     for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
            subprocess.run(
                [*self._java(), "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(self.properties), "--ignore-formatted", *scram],
                check=True, capture_output=True,
            )
            (self.state / "kafka" / "acls.applied").unlink(missing_ok=True)

    def _cluster_id(self) -> str:
        """One id for every node of the cluster, kept beside them; a cluster keeps its size for its life."""
        path = self.state / "kafka-cluster.json"
        if path.exists():
            known = json.loads(path.read_text())
            if known["nodes"] != self.cluster_size:
                raise RuntimeError(f"{self.state} holds a {known['nodes']}-node Kafka cluster, not "
                                   f"{self.cluster_size}: stop it and remove that directory to change its size")
            return known["id"]
        cluster_id = kraft_cluster_id()
        path.write_text(json.dumps({"id": cluster_id, "nodes": self.cluster_size}))
        return cluster_id

    def after_start(self) -> None:
        """Apply the registry's ACLs once per registry content (a fresh broker has none); node 1 does it for the
        cluster (ACLs live in the cluster's metadata log)."""
        if not self.authenticate or self.node_id != 1:
            return
        plan = provision_plan(registry().clients)
        marker = self.state / "kafka" / "acls.applied"
        if marker.exists() and marker.read_text() == plan:
            return
        self.provision(plan)
        marker.write_text(plan)

    def provision(self, plan: str) -> str:
        """Run the Admin-API provisioner (deploy/local/kafka/Provision.java) with `plan` on its standard input."""
        self.libs = artifacts.kafka_classpath()
        source = artifacts.assets_dir() / "kafka" / "Provision.java"
        env = {**os.environ, "LIENTHONG_KAFKA_ADMIN_PASSWORD": self.credentials.ensure([ADMIN])[ADMIN],
               "LIENTHONG_KAFKA_CA_FILE": str(self.ca.ca_file)}
        done = subprocess.run([*self._java(), str(source), self.bootstrap, ADMIN], input=plan,
                              text=True, capture_output=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"Kafka provisioning failed: {done.stderr.strip()[-2000:]}")
        return done.stdout.strip()

    def admin_settings(self, base: KafkaSettings | None = None) -> KafkaSettings:
        if not self.authenticate:
            return KafkaSettings(bootstrap_servers=base.bootstrap_servers if base else self.bootstrap,
                                 security_protocol="PLAINTEXT")
        return self.client_settings(ADMIN, base)

    def client_settings(self, name: str, base: KafkaSettings | None = None) -> KafkaSettings:
        base = base or KafkaSettings(bootstrap_servers=self.bootstrap)
        password = self.credentials.ensure([ADMIN]).get(name)
        if password is None:
            raise KeyError(f"no credentials for {name!r} in {self.credentials.path}")
        return base.model_copy(update={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                       "ssl_cafile": self.ca.ca_file}).as_client(name, password)

    def _java(self) -> list[str]:
        java = artifacts.require("java", "run the Kafka broker", "apt-get install openjdk-17-jre-headless")
        return [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*",
        ]

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.properties)]

    async def healthy(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        if not port_open(self.host, self.port):
            return False
        # This node only: its own address to bootstrap from.
        node = self.admin_settings(KafkaSettings(bootstrap_servers=self.address))
        admin = AIOKafkaAdminClient(**node.client_options(), request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.describe_cluster(), 5)
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


class PlaintextKafka(LocalKafka):
    """The same broker without authentication or authorization: only the benchmark's baseline for SASL's cost,
    never an environment of the project."""

    authenticate = False


class LocalFerretDB(LocalServer):
    # WAL without an fsync per commit: durable across process crashes (kill -9, which the fault tests do), not
    # across a power loss — like a one-node Kafka on the page cache. Guarded replaces run ~2x faster
    # (`benchmarks/bench_ferretdb_sync.py`). Production runs MongoDB with w=majority.
    sqlite_params = "_pragma=synchronous(normal)"

    def prepare(self) -> None:
        self.binary = artifacts.ferretdb_binary()
        (self.state / "ferretdb" / "data").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--listen-addr={self.host}:{self.port}",
            f"--sqlite-url=file:{self.state / 'ferretdb' / 'data'}/?{self.sqlite_params}",
            "--log-level=warn",
        ]

    async def healthy(self) -> bool:
        from pymongo import AsyncMongoClient

        if not port_open(self.host, self.port):
            return False
        client: AsyncMongoClient = AsyncMongoClient(
            f"mongodb://{self.host}:{self.port}/", serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
        )
        try:
            await client.admin.command("ping")
            return True
        except Exception:
            return False
        finally:
            await client.close()
