"""Who may do what: the client registry (`clients.toml`, data) and the Kafka ACLs derived from it, pure.

Kafka's StandardAuthorizer closes every resource without an ACL to everyone but the super user (the operators'
`admin`), so a client may do exactly what these bindings grant: read the topics it consumes with the consumer
groups named after it, write the topics it produces, and (the dashboard) describe the cluster.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Literal

import structlog

ADMIN = "admin"
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
REGISTRY = resources.files("lienthong.identity") / "clients.toml"


def registry_path() -> Path:
    """The registry operators maintain: LIENTHONG_CLIENTS, else the one shipped with the code."""
    return Path(os.environ.get("LIENTHONG_CLIENTS") or str(REGISTRY))


@dataclass(frozen=True)
class Client:
    name: str
    kind: Literal["service", "tool", "agency"]
    consumes: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    unit_levels: tuple[str, ...] = ()
    purges: tuple[str, ...] = ()  # topics whose consumed records it deletes (personal data in clear)
    monitors: bool = False
    citizen_actions: bool = False  # the portal: withdrawals and supplements, on the citizen's behalf
    description: str = ""

    @property
    def principal(self) -> str:
        return f"User:{self.name}"

    @property
    def reads(self) -> tuple[str, ...]:
        """Topics it consumes; an agency system also reads its own work topic (and no other agency's)."""
        from lienthong.topics import work_topic

        return self.consumes + ((work_topic(self.name).name,) if self.kind == "agency" else ())

    @property
    def writes(self) -> tuple[str, ...]:
        """Topics it produces; an agency system also writes its own outcomes topic (and no other agency's)."""
        from lienthong.topics import outcomes_topic

        return self.produces + ((outcomes_topic(self.name).name,) if self.kind == "agency" else ())

    def acts_for(self, unit: str) -> bool:
        from lienthong.catalogue import catalogue

        known = catalogue().units.get(unit)
        return unit in self.units or (known is not None and known.level in self.unit_levels)


@dataclass(frozen=True)
class Acl:
    """One Kafka ACL binding, as `kafka-acls` and the Admin API name its parts."""

    principal: str
    resource_type: Literal["TOPIC", "GROUP", "CLUSTER"]
    resource_name: str
    pattern: Literal["LITERAL", "PREFIXED"]
    operation: Literal["READ", "WRITE", "DESCRIBE", "DELETE"]


@dataclass(frozen=True)
class Registry:
    clients: tuple[Client, ...] = field(default_factory=tuple)

    def get(self, name: str) -> Client:
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(f"no client {name!r} in the registry")

    @property
    def agencies(self) -> tuple[Client, ...]:
        return tuple(c for c in self.clients if c.kind == "agency")

    def acting_for(self, unit: str) -> tuple[str, ...]:
        """The agency systems that receive `unit`'s assignments (usually one)."""
        return tuple(c.name for c in self.agencies if c.acts_for(unit))

    def refusal(self, sender: str, unit: str | None) -> str | None:
        """Why `sender` may not send this outcome (None: it may). `unit`: the unit the outcome speaks for, None
        for a citizen's action. Reasons name clients and units only."""
        client = next((c for c in self.agencies if c.name == sender), None)
        if client is None:
            return f"{sender} is not a registered agency system"
        if unit is None:
            return None if client.citizen_actions else f"{sender} does not act for citizens"
        return None if client.acts_for(unit) else f"{sender} does not act for {unit}"


def load(path: Path | None = None) -> Registry:
    text = (path or registry_path()).read_text(encoding="utf-8")
    clients = []
    for entry in tomllib.loads(text).get("client", []):
        unknown = set(entry) - set(Client.__dataclass_fields__)
        if unknown:
            raise ValueError(f"client {entry.get('name')!r}: unknown keys {sorted(unknown)}")
        clients.append(Client(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}))
    names = [c.name for c in clients]
    if len(set(names)) != len(names) or ADMIN in names:
        raise ValueError("client names must be unique and not 'admin'")
    bad = [n for n in names if not NAME.fullmatch(n) or n == "dlq"]
    if bad:  # names become topic names (unit.work.<name>) and principals
        raise ValueError(f"client names must be lower-case letters, digits and '-', not 'dlq': {bad}")
    return Registry(tuple(clients))


_current: dict[Path, tuple[tuple[int, int], Registry]] = {}
log = structlog.get_logger("identity")


def registry() -> Registry:
    """The registry, re-read when its file changes: a client added or revoked takes effect without a restart.
    A file that no longer loads (an edit half-way) keeps the last good registry in force, and says so."""
    path = registry_path()
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _current.get(path)
    if cached is None or cached[0] != version:
        try:
            cached = (version, load(path))
        except (ValueError, tomllib.TOMLDecodeError, TypeError) as exc:
            if cached is None:
                raise
            log.error("registry_not_loaded", path=str(path), error=type(exc).__name__, detail=str(exc)[:300])
            return cached[1]
        _current[path] = cached
    return cached[1]


def save(reg: Registry, *, add: Client | None = None, remove: str | None = None) -> Registry:
    """Append a client to the registry file, or remove one (its entry only; comments and the rest stay)."""
    path = registry_path()
    text = path.read_text(encoding="utf-8")
    if add is not None:
        if any(c.name == add.name for c in reg.clients) or add.name == ADMIN:
            raise ValueError(f"client {add.name!r} exists already")
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in add.__dict__.items()
                  if v not in ((), "", False)}
        text = text.rstrip("\n") + "\n\n[[client]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in fields.items())
    if remove is not None:
        reg.get(remove)  # KeyError when unknown
        text = _without(text.split("\n[[client]]\n"), remove)
    path.write_text(text, encoding="utf-8")
    return load(path)


def _without(blocks: list[str], name: str) -> str:
    kept = [blocks[0]] + [b for b in blocks[1:] if tomllib.loads("[[client]]\n" + b)["client"][0]["name"] != name]
    return "\n[[client]]\n".join(kept)


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def acls(client: Client) -> list[Acl]:
    """The least privilege that lets `client` do what the registry says, nothing more."""
    out = [_topic_acl(client, t, "READ") for t in client.reads]
    out += [_topic_acl(client, t, "WRITE") for t in client.writes]
    out += [_topic_acl(client, t, "DELETE") for t in client.purges]
    out += [Acl(client.principal, "GROUP", g, "PREFIXED", "READ") for g in client.groups]
    if client.monitors:  # topic list, offsets and every group's lag; the newest dead letters' reasons
        out += [Acl(client.principal, "CLUSTER", "kafka-cluster", "LITERAL", "DESCRIBE"),
                Acl(client.principal, "TOPIC", "*", "LITERAL", "DESCRIBE"),
                Acl(client.principal, "GROUP", "*", "LITERAL", "DESCRIBE")]
        out += [Acl(client.principal, "TOPIC", t, "LITERAL", "READ") for t in _dead_letter_topics()]
    return out


def provision_plan(clients: Iterable[Client], passwords: dict[str, str] | None = None) -> str:
    """What `deploy/local/kafka/Provision.java` reads on its standard input: a SCRAM user for each client with a
    password in `passwords`, then each client's ACLs. One format for `infra up`, `clients add` and docker-compose's
    provisioning job, so every broker gets the same principals and rights."""
    clients = list(clients)
    lines = [f"user {c.name} {passwords[c.name]}" for c in clients if passwords and c.name in passwords]
    lines += [f"allow {a.principal} {a.resource_type} {a.resource_name} {a.pattern} {a.operation}"
              for c in clients for a in acls(c)]
    return "\n".join(lines)


def _topic_acl(client: Client, topic: str, operation: Literal["READ", "WRITE", "DELETE"]) -> Acl:
    """`unit.work.*` in the registry: every topic of that family (routing, the simulator)."""
    if topic.endswith("*"):
        return Acl(client.principal, "TOPIC", topic[:-1], "PREFIXED", operation)
    return Acl(client.principal, "TOPIC", topic, "LITERAL", operation)


def _dead_letter_topics() -> list[str]:
    from lienthong.topics import dead_letter_topics

    return [t.name for t in dead_letter_topics()]


def acl_table(reg: Registry | None = None) -> str:
    """The README's "Who may do what" table, from the registry."""
    rows = ["| client | kind | acts for | reads (consumer groups) | writes |", "|---|---|---|---|---|"]
    for c in (reg or registry()).clients:
        acts = ", ".join(c.units) or ", ".join(f"every {lvl} unit" for lvl in c.unit_levels) or "—"
        reads = ", ".join(f"`{t}`" for t in c.reads) or "—"
        groups = ", ".join(f"`{g}*`" for g in c.groups)
        writes = ", ".join(f"`{t}`" for t in c.writes) or "—"
        if c.citizen_actions:
            writes += " (citizens' actions)"
        if c.purges:
            writes += "; deletes what it consumed of " + ", ".join(f"`{t}`" for t in c.purges)
        extra = "; describes every topic and group (dashboard)" if c.monitors else ""
        rows.append(f"| `{c.name}` | {c.kind} | {acts} | {reads}{f' ({groups})' if groups else ''}{extra} | "
                    f"{writes} |")
    return "\n".join(rows)
