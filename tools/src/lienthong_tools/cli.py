"""`lienthong`: the operator's command line.

    lienthong infra up|down|status   local Kafka + FerretDB (no Docker), topics from the catalogue
    lienthong topics create|list     the topic catalogue on KAFKA_BOOTSTRAP_SERVERS
    lienthong stats rebuild          replay the dossier log into fresh projections, switch atomically
    lienthong conformance --agency A would routing accept the records agency A sent (its topic, or --file)
    lienthong catalogue import FILE  the province's procedure catalogue (CSV/XLSX) as a new version
    lienthong run                    infrastructure + the four services + a gentle simulator, until Ctrl-C
    lienthong simulate               realistic traffic through intake and the units' topics (deterministic by seed)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lienthong_tools.infra.artifacts import MissingTool

SERVICES = ("intake", "routing", "notify", "stats")


def _environment(args: argparse.Namespace):  # noqa: ANN202 (imported lazily: the CLI starts fast)
    from lienthong_tools.infra.environment import Environment

    return Environment.from_settings(name=args.env, brokers=getattr(args, "brokers", None))


def cmd_infra(args: argparse.Namespace) -> int:
    env = _environment(args)
    if args.action == "up":
        started = time.monotonic()
        for name, outcome in env.up().items():
            print(f"{name}: {outcome}")
        print(f"ready in {time.monotonic() - started:.1f}s")
        return 0
    if args.action == "down":
        for name, outcome in env.down().items():
            print(f"{name}: {outcome}")
        return 0
    status = env.status()
    print(json.dumps(status, indent=2))
    return 0 if all(s["healthy"] for s in status.values()) else 1


def cmd_topics(args: argparse.Namespace) -> int:
    """Create the catalogue's topics on the cluster named by KAFKA_BOOTSTRAP_SERVERS (the compose job uses it)."""

    from lienthong.messaging import ensure_topics
    from lienthong.topics import all_topics

    if args.action == "list":
        for topic in all_topics():
            print(f"{topic.name:28} partitions={topic.partitions:<3} retention_ms={topic.retention_ms:<12} {topic.description}")
        return 0
    created = asyncio.run(ensure_topics(_kafka_as(args, "admin"), all_topics()))
    print(f"created: {', '.join(created)}" if created else "all topics present")
    return 0


def _kafka_as(args: argparse.Namespace, client: str):  # noqa: ANN202
    """KafkaSettings from the environment; without a username there, `client`'s credentials from the local
    environment's credential store (an operator's own cluster comes with KAFKA_SASL_USERNAME/PASSWORD)."""
    from lienthong.settings import KafkaSettings

    kafka = KafkaSettings()
    if kafka.sasl_username or not kafka.authenticated:
        return kafka
    return _environment(args).kafka.client_settings(client, kafka)


def _issuer(env):  # noqa: ANN001, ANN202
    """The local token issuer the services trust: the one AUTH_JWKS_FILE names, else the environment's own."""
    from lienthong.auth import LocalIssuer

    jwks = os.environ.get("AUTH_JWKS_FILE")
    return LocalIssuer(Path(jwks).parent if jwks else env.kafka.state / "auth")


def cmd_tokens(args: argparse.Namespace) -> int:
    """The local issuer (make run, tests): a bearer token for a client, or revoke every token of one."""
    issuer = _issuer(_environment(args))
    if args.action == "revoke":
        issuer.revoke(args.name)
        print(f"tokens of {args.name} are refused from now on")
        return 0
    print(issuer.issue(args.name, args.scope, args.units, ttl_s=args.ttl))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """The stats service's own rebuild, as stats (the tools sit above the services)."""
    from stats.rebuild import rebuild

    result = asyncio.run(rebuild(_kafka_as(args, "stats")))
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    """Routing's own judgement: as routing, reading only."""
    from routing import conformance

    argv = ["--agency", args.agency, *(["--file", args.file] if args.file else []),
            *(["--topic", args.topic] if args.topic else []), *(["--json"] if args.json else [])]
    return conformance.main(argv, kafka=_kafka_as(args, "routing"))


def cmd_catalogue(args: argparse.Namespace) -> int:
    """Import (checked whole: nothing of a file with an error is stored), list the versions, or write the generated
    catalogue (the province's published mix) as a file to import."""
    from lienthong.catalogue import catalogue
    from lienthong.catalogue.table import CatalogueFileError, load_file, write_file
    from lienthong.catalogue.versions import CatalogueVersions
    from lienthong.settings import MongoSettings
    from pymongo.errors import PyMongoError
    from lienthong.store import database, make_client

    if args.action == "generate":
        from lienthong_tools.catalogue_gen import generate

        procedures = generate(args.seed)
        write_file(procedures.values(), Path(args.file))
        print(f"{len(procedures)} procedures written to {args.file}")
        return 0

    async def act() -> int:
        client = make_client(MongoSettings())
        try:
            versions = CatalogueVersions(database(client))
            if args.action == "versions":
                for doc in await versions.history():
                    print(f"{doc['_id']:>4}  {doc['imported_at']:%Y-%m-%d %H:%M}  {doc['count']:>6} procedures  "
                          f"{doc['source']}")
                return 0
            started = time.monotonic()
            try:
                procedures = load_file(Path(args.file), catalogue().units)
            except CatalogueFileError as exc:
                print(f"{args.file}: {exc}", file=sys.stderr)
                return 2
            checked = time.monotonic() - started
            if args.dry_run:
                print(f"{len(procedures)} procedures, no error ({checked:.2f} s); nothing stored (--dry-run)")
                return 0
            version, new = await versions.publish(procedures, Path(args.file).name)
            print(f"version {version}: {len(procedures)} procedures" + ("" if new else " (unchanged: already stored)")
                  + f"; checked in {checked:.2f} s, stored in {time.monotonic() - started - checked:.2f} s")
            return 0
        finally:
            await client.close()

    try:
        return asyncio.run(act())
    except PyMongoError as exc:
        print(f"error: the store did not answer ({type(exc).__name__}); nothing imported", file=sys.stderr)
        return 1


def cmd_citizens(args: argparse.Namespace) -> int:
    """Erase a citizen (their data key goes: every sealed copy becomes unreadable), or read the access log. The
    CCCD is read from stdin unless given, so it stays out of shell history and the process list."""
    import getpass

    from lienthong.contracts.types import CitizenId
    from lienthong.personaldata import Vault
    from lienthong.settings import MongoSettings
    from lienthong.store import database, make_client
    from pydantic import TypeAdapter, ValidationError

    async def act() -> int:
        client = make_client(MongoSettings())
        try:
            vault = Vault(database(client))
            if args.action == "access-log":
                for line in await vault.accesses(dossier=args.dossier, reader=args.reader, limit=args.limit):
                    print(f"{line['at'].isoformat()}  {line['reader']:<20} {line['dossier']:<28} {line['purpose']}")
                return 0
            raw = args.citizen_id or (getpass.getpass("CCCD: ") if sys.stdin.isatty() else sys.stdin.readline())
            try:
                citizen_id = TypeAdapter(CitizenId).validate_python(raw.strip())
            except ValidationError:
                print("not a 12-digit citizen identity number", file=sys.stderr)
                return 2
            had_key = await vault.erase(citizen_id, by=f"cli:{getpass.getuser()}")
            print("erased" if had_key else "nothing to erase (unknown or already erased); erasure recorded")
            return 0
        finally:
            await client.close()

    return asyncio.run(act())


def cmd_clients(args: argparse.Namespace) -> int:
    """The client registry and the broker: who exists, add one (SCRAM user + ACLs), revoke one (at once)."""
    from lienthong.identity import Client, load, provision_plan, registry_path, save

    reg = load(registry_path())
    env = _environment(args)
    kafka = env.kafka
    if args.action == "list":
        known = kafka.credentials.read()
        for c in reg.clients:
            print(f"{c.name:20} {c.kind:8} credentials={'yes' if c.name in known else 'no':3} "
                  f"reads={','.join(c.reads) or '-'} writes={','.join(c.writes) or '-'} "
                  f"units={','.join(c.units or c.unit_levels) or '-'}")
        return 0
    if args.action == "add":
        client = Client(name=args.name, kind=args.kind, consumes=tuple(args.consumes), produces=tuple(args.produces),
                        groups=tuple(args.groups or ([f"agency-{args.name}"] if args.consumes or args.kind == "agency"
                                                     else [])),
                        units=tuple(args.units), description=args.description or "")
        reg = save(reg, add=client)
        password = kafka.credentials.ensure([client.name])[client.name]
        print(kafka.provision(provision_plan([client], {client.name: password})))
        if client.kind == "agency":  # its own assignments and outcomes topics
            from lienthong.messaging import ensure_topics
            from lienthong.topics import outcomes_topic, work_topic

            created = asyncio.run(ensure_topics(kafka.admin_settings(), (work_topic(client.name),
                                                                        outcomes_topic(client.name))))
            print(f"topics created: {', '.join(created) or 'none (they exist)'}")
        print(f"client {client.name} added; its password (shown once, also in {kafka.credentials.path}): {password}")
        return 0
    reg = save(reg, remove=args.name)
    print(kafka.provision(f"nouser {args.name}\nrevoke User:{args.name}"))
    passwords = kafka.credentials.read()
    passwords.pop(args.name, None)
    kafka.credentials.write(passwords)
    _issuer(env).revoke(args.name)  # with an identity provider: disable the client there too
    print(f"client {args.name} revoked: its credentials and ACLs are gone from the broker and every bearer token "
          "issued to it until now is refused")
    return 0


def cmd_credentials(args: argparse.Namespace) -> int:
    from lienthong_tools.infra.servers import write_secrets_directory

    plan = write_secrets_directory(Path(args.directory))
    print(f"a password file per registered client in {plan.parent}; SCRAM users and ACLs to apply: {plan}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from lienthong.auth import LocalIssuer
    from lienthong.logging import configure_logging
    from lienthong.settings import KafkaSettings
    from lienthong_tools.simulation.plan import filings
    from lienthong_tools.simulation.run import SimClock, Simulator

    duration = args.duration or None
    start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    if args.dry_run:  # the filings only (outcomes depend on the dossier codes intake gives)
        if duration is None:
            print("error: --dry-run needs a --duration", file=sys.stderr)
            return 2
        for f in filings(args.seed, args.rate, duration, start, args.speedup):
            b = f.body
            print(json.dumps({"at": f.at.isoformat(), "via": f.via, "external_ref": b["external_ref"],
                              "procedure": b["procedure_code"], "channel": b["channel"], "unit": b["receiving_unit"]}))
        return 0
    configure_logging(os.environ.get("SIMULATOR_LOG_LEVEL", "INFO"))
    assertions = os.environ.get("CITIZEN_ASSERTION_JWKS_FILE")  # the local portal key beside its JWKS
    sim = Simulator(args.seed, args.intake_url, KafkaSettings(), SimClock(args.speedup, start),
                    portal=LocalIssuer.portal(Path(assertions).parent) if assertions else None)
    try:
        counts = asyncio.run(sim.run(args.rate, duration))
    except KeyboardInterrupt:
        counts = sim.counts
    print(json.dumps({"seed": args.seed, **dict(sorted(counts.items()))}))
    return 0


def _province_catalogue() -> str:
    """What `lienthong run` files under: the newest imported version, else the generated province-sized example
    (imported now, as version 1)."""
    from lienthong.catalogue.versions import CatalogueVersions
    from lienthong.settings import MongoSettings
    from lienthong.store import database, make_client
    from lienthong_tools.catalogue_gen import generate

    async def seed() -> str:
        client = make_client(MongoSettings())
        try:
            versions = CatalogueVersions(database(client))
            latest = await versions.latest()
            if latest is not None:
                return f"version {latest['_id']} ({latest['count']} procedures, from {latest['source']})"
            version, _ = await versions.publish(generate(), "the generated example")
            return (f"version {version}, the generated example of 2,223 procedures "
                    "(`lienthong catalogue import FILE` brings the province's own)")
        finally:
            await client.close()

    return asyncio.run(seed())


def cmd_run(args: argparse.Namespace) -> int:
    from lienthong.settings import KafkaSettings

    env = _environment(args)
    outcomes = env.up()
    for name, outcome in outcomes.items():
        print(f"{name}: {outcome}", flush=True)
    print(f"catalogue: {_province_catalogue()}", flush=True)
    kafka = KafkaSettings()

    from lienthong.auth import SUBMIT, LocalIssuer

    issuer = _issuer(env)  # its JWKS goes to every service
    assertions = os.environ.get("CITIZEN_ASSERTION_JWKS_FILE")  # the portal's key: the simulator plays the portal
    portal = LocalIssuer.portal(Path(assertions).parent if assertions else issuer.directory / "portal")

    def as_client(name: str) -> dict[str, str]:  # each service and the simulator with its own principal
        return {**os.environ, **env.kafka.client_settings(name, kafka).as_env(), **issuer.env(),
                **portal.env("CITIZEN_ASSERTION_"),
                "SIMULATOR_TOKEN": issuer.issue("portal", [SUBMIT], ["*"], ttl_s=7 * 24 * 3600)}

    # Notifications go to a local mail catcher and SMS gateway unless a relay or gateway of one's own is named.
    outbox = None
    if not (os.environ.get("NOTIFY_SMTP_HOST") or os.environ.get("NOTIFY_SMS_GATEWAY_URL")):
        from lienthong_tools.infra.outbox import Outbox

        outbox = Outbox(int(os.environ.get("LIENTHONG_OUTBOX_PORT", "8025")),
                        int(os.environ.get("LIENTHONG_OUTBOX_SMTP_PORT", "0")) or None)
        outbox_page = outbox.start()
    delivery = outbox.env() if outbox else {}
    procs = {name: subprocess.Popen([sys.executable, "-m", f"{name}.main"],
                                    env={**as_client(name), **(delivery if name == "notify" else {})})
             for name in SERVICES}
    if args.simulate_rate > 0:  # a gentle simulator, so that a newcomer sees dossiers move on the dashboard
        from datetime import UTC, datetime, timedelta

        from lienthong_tools.simulation.plan import add_office_time

        opens = add_office_time(datetime.now(UTC), timedelta(0))  # at night too, offices are open in the simulation
        simulator = subprocess.Popen([
            sys.executable, "-m", "lienthong_tools.cli", "simulate", "--rate", str(args.simulate_rate), "--duration", "0",
            "--speedup", "60", "--seed", "1", "--start", opens.isoformat()], env=as_client("simulator"))
    else:
        simulator = None
    from lienthong.auth import OPS_READ, STATS_READ

    operator = issuer.issue("operator", [STATS_READ, OPS_READ], ttl_s=24 * 3600)
    print("Liên Thông is up: intake :8081, routing :8082, notify :8083, stats :8084. Ctrl-C stops everything.\n"
          "Dashboard: http://127.0.0.1:8084/dashboard with the header\n"
          f"  Authorization: Bearer {operator}\n"
          "(or `lienthong tokens issue NAME --scope ...` for another client)"
          + (f"\nNotifications sent (mail and SMS, kept in memory): {outbox_page}" if outbox else ""))
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            dead = [f"{n} (code {p.returncode})" for n, p in procs.items() if p.poll() is not None]
            if dead:
                print(f"service(s) exited: {', '.join(dead)}; stopping the rest", file=sys.stderr)
                break
            if simulator is not None and simulator.poll() is not None:  # traffic is optional: the services stay
                print(f"the simulator exited (code {simulator.returncode}); the services keep running",
                      file=sys.stderr)
                simulator = None
            time.sleep(0.5)
    finally:
        children = [*procs.values(), *([simulator] if simulator else [])]
        for proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in children:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if outbox is not None:
            outbox.stop()
        for server in reversed(env.servers):  # only what this run started: a server already up stays up
            if outcomes.get(server.name) == "started":
                print(f"{server.name}: {server.stop()}")
    return 0 if stopping else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lienthong", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--env", default="dev", help="name of the local environment (state under .lienthong/NAME)")
    sub = parser.add_subparsers(dest="command", required=True)
    infra = sub.add_parser("infra", help="local Kafka + MongoDB-compatible server")
    infra.add_argument("action", choices=["up", "down", "status"])
    infra.add_argument("--brokers", type=int, choices=[1, 3], default=None,
                       help="Kafka nodes (3: replication factor 3, min.insync.replicas 2); default: as the "
                       "environment was first started, else 1")
    infra.set_defaults(func=cmd_infra)
    topics = sub.add_parser("topics", help="the topic catalogue: list it, or create it on KAFKA_BOOTSTRAP_SERVERS")
    topics.add_argument("action", choices=["create", "list"])
    topics.set_defaults(func=cmd_topics)
    stats = sub.add_parser("stats", help="stats projections: `rebuild` replays the dossier log into fresh ones")
    stats.add_argument("action", choices=["rebuild"])
    stats.set_defaults(func=cmd_stats)
    conformance = sub.add_parser("conformance", help="would routing accept what an agency system sent? (reads only)")
    conformance.add_argument("--agency", required=True, help="the agency system that sent the records")
    conformance.add_argument("--file", help="JSON lines, one CloudEvent per line (default: its outcomes topic)")
    conformance.add_argument("--topic", help="a topic to read instead of unit.outcomes.<agency>")
    conformance.add_argument("--json", action="store_true", help="one JSON object per record")
    conformance.set_defaults(func=cmd_conformance)
    cat = sub.add_parser("catalogue", help="the procedure catalogue: import a CSV/XLSX file as a new version, list "
                         "the versions, or generate the province-sized example")
    cat.add_argument("action", choices=["import", "versions", "generate"])
    cat.add_argument("file", nargs="?", help="import: the file to read; generate: the file to write (.csv, .xlsx)")
    cat.add_argument("--dry-run", action="store_true", help="import: check the file, store nothing")
    cat.add_argument("--seed", type=int, default=2025, help="generate: same seed, same catalogue")
    cat.set_defaults(func=cmd_catalogue)
    citizens = sub.add_parser("citizens", help="personal data: erase a citizen, or read who read whose data")
    citizens.add_argument("action", choices=["erase", "access-log"])
    citizens.add_argument("citizen_id", nargs="?", help="erase: the CCCD (default: read from stdin)")
    citizens.add_argument("--dossier", help="access-log: only reads of this dossier")
    citizens.add_argument("--reader", help="access-log: only reads by this client")
    citizens.add_argument("--limit", type=int, default=200)
    citizens.set_defaults(func=cmd_citizens)
    clients = sub.add_parser("clients", help="who may connect: list, add (SCRAM user + ACLs) or revoke a client")
    clients.add_argument("action", choices=["list", "add", "revoke"])
    clients.add_argument("name", nargs="?", help="the client's principal name (add, revoke)")
    clients.add_argument("--kind", default="agency", choices=["agency", "service", "tool"])
    clients.add_argument("--units", nargs="*", default=[], help="unit codes the client acts for")
    clients.add_argument("--consumes", nargs="*", default=[], help="topics it reads")
    clients.add_argument("--produces", nargs="*", default=[], help="topics it writes")
    clients.add_argument("--groups", nargs="*", help="consumer-group prefixes (default: agency-NAME)")
    clients.add_argument("--description")
    clients.set_defaults(func=cmd_clients)
    credentials = sub.add_parser("credentials", help="password files for every registered client and the "
                                 "broker's provisioning plan, for a broker lienthong does not start (docker-compose)")
    credentials.add_argument("directory", help="where to write them (a secrets volume)")
    credentials.set_defaults(func=cmd_credentials)
    tokens = sub.add_parser("tokens", help="local bearer tokens: issue one for a client, or revoke a client's")
    tokens.add_argument("action", choices=["issue", "revoke"])
    tokens.add_argument("name", help="the client (the token's subject)")
    tokens.add_argument("--scope", nargs="*", default=[], help="dossiers:submit subscriptions:manage "
                        "citizens:opt-out stats:read ops:read")
    tokens.add_argument("--units", nargs="*", default=[], help="units it acts for (* for every unit)")
    tokens.add_argument("--ttl", type=int, default=3600, help="seconds")
    tokens.set_defaults(func=cmd_tokens)
    run = sub.add_parser("run", help="infrastructure + the four services + a gentle simulator, until Ctrl-C")
    run.add_argument("--simulate-rate", type=float, default=0.2, help="dossiers per second; 0: no simulator")
    run.set_defaults(func=cmd_run)
    sim = sub.add_parser("simulate", help="realistic traffic through intake and the units' topics")
    sim.add_argument("--rate", type=float, default=1.0, help="dossiers filed per real second in office hours")
    sim.add_argument("--duration", type=float, default=60.0, help="real seconds; 0: until Ctrl-C")
    sim.add_argument("--seed", type=int, default=1, help="same seed (and --start): same filings and outcomes")
    sim.add_argument("--speedup", type=float, default=1.0, help="simulated seconds per real second")
    sim.add_argument("--start", help="simulated start time, ISO 8601 with offset (default: now)")
    sim.add_argument("--intake-url", default=os.environ.get("INTAKE_URL", "http://127.0.0.1:8081"))
    sim.add_argument("--dry-run", action="store_true", help="print the plan as JSON lines; send nothing")
    sim.set_defaults(func=cmd_simulate)
    args = parser.parse_args(argv)
    if args.command == "clients" and args.action != "list" and not args.name:
        parser.error(f"clients {args.action} needs a NAME")
    if args.command == "catalogue" and args.action != "versions" and not args.file:
        parser.error(f"catalogue {args.action} needs a FILE")
    try:
        return args.func(args)
    except MissingTool as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
