from __future__ import annotations

import pytest

from lienthong_tools.infra.artifacts import MissingTool, require
from lienthong_tools.infra.servers import is_local
from lienthong.settings import MongoSettings


def test_missing_toolchain_names_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingTool, match=r"`java` not found.*run the Kafka broker.*apt-get install openjdk"):
        require("java", "run the Kafka broker", "apt-get install openjdk-17-jre-headless")


@pytest.mark.parametrize(
    ("host", "local"), [("127.0.0.1", True), ("localhost", True), ("::1", True), ("kafka-1.prod", False), ("10.0.0.5", False)]
)
def test_only_loopback_addresses_are_provisioned(host, local):
    assert is_local(host) is local


def test_mongo_host_port_from_uri():
    assert MongoSettings(uri="mongodb://u:p@db1:27018,db2:27018/?replicaSet=rs0").host_port == ("db1", 27018)
    assert MongoSettings(uri="mongodb://127.0.0.1/").host_port == ("127.0.0.1", 27017)


def test_cluster_ids_never_start_with_a_dash(monkeypatch):
    import uuid

    from lienthong_tools.infra import servers

    # 0xf8 as the first byte encodes as "-" in URL-safe base64: the first UUID drawn is refused.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(servers.uuid, "uuid4", lambda: next(drawn))
    assert servers.kraft_cluster_id() == "EBAQEBAQEBAQEBAQEBAQEA"


def test_readme_acl_table_is_generated_from_the_registry():
    from pathlib import Path

    from lienthong.identity import acl_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    shown = readme.split("<!-- acl-table:start -->\n", 1)[1].split("\n<!-- acl-table:end -->", 1)[0]
    assert shown == acl_table(), "README's ACL table differs from the registry: regenerate it from acl_table()"


def test_every_unit_has_exactly_one_agency_system_and_only_the_portal_acts_for_citizens():
    from lienthong.catalogue import catalogue
    from lienthong.identity import registry

    reg = registry()
    assert {unit: reg.acting_for(unit) for unit in catalogue().units if len(reg.acting_for(unit)) != 1} == {}
    assert [c.name for c in reg.clients if c.citizen_actions] == ["portal"]
    assert reg.refusal("police", "CATINH") is None
    assert reg.refusal("police", "HACTHANH") == "police does not act for HACTHANH"
    assert reg.refusal("commune-one-stop", None) == "commune-one-stop does not act for citizens"
    assert reg.refusal("portal", None) is None and reg.refusal("portal", "HACTHANH") is not None
    assert reg.refusal("routing", "HACTHANH") == "routing is not a registered agency system"


def test_outcome_topics_name_their_sender_and_the_pattern_skips_the_dlq():
    import re

    from lienthong.topics import OUTCOMES_DLQ, OUTCOMES_PATTERN, agency_of, outcomes_topic

    assert agency_of(outcomes_topic("land-registry").name) == "land-registry"
    assert agency_of(OUTCOMES_DLQ) is None and agency_of("unit.work.police") is None
    assert re.match(OUTCOMES_PATTERN, "unit.outcomes.tax") and not re.match(OUTCOMES_PATTERN, OUTCOMES_DLQ)
    assert not re.match(OUTCOMES_PATTERN, "unit.outcomes.tax.dlq")


def test_registry_gives_least_privilege():
    from lienthong.identity import acls, registry

    police = {(a.resource_type, a.resource_name, a.operation) for a in acls(registry().get("police"))}
    assert police == {("TOPIC", "unit.work.police", "READ"), ("TOPIC", "unit.outcomes.police", "WRITE"),
                      ("GROUP", "agency-police", "READ")}  # its own topics, no other agency's
    assert not any(a.operation == "WRITE" and a.resource_name == "dossier.lifecycle"
                   for c in registry().clients if c.kind == "agency" for a in acls(c))


def test_outside_local_a_service_refuses_development_keys(monkeypatch):
    from lienthong.settings import DevelopmentSecret, KafkaSettings
    from notify.main import bootstrap

    monkeypatch.setenv("LIENTHONG_ENVIRONMENT", "production")

    with pytest.raises(DevelopmentSecret) as refused:
        bootstrap(kafka=KafkaSettings(security_protocol="SASL_SSL"))
    assert all(name in str(refused.value) for name in (
        "PERSONAL_DATA_KEK", "PERSONAL_DATA_SUBJECT_KEY", "NOTIFY_SECRETS_KEY", "TRACKING_KEY"))
    assert "lienthong-dev" not in str(refused.value)  # names the settings, never their values
    monkeypatch.setenv("TRACKING_KEY", "a-real-key-from-the-secret-store")
    monkeypatch.setenv("PERSONAL_DATA_KEK", "another-real-key")
    monkeypatch.setenv("PERSONAL_DATA_SUBJECT_KEY", "a-fourth-real-key")
    monkeypatch.setenv("NOTIFY_SECRETS_KEY", "a-third-real-key")
    bootstrap(kafka=KafkaSettings(security_protocol="SASL_SSL"))  # starts
    with pytest.raises(DevelopmentSecret, match=r"KAFKA_SECURITY_PROTOCOL \(SASL_SSL\)"):
        bootstrap(kafka=KafkaSettings(security_protocol="SASL_PLAINTEXT"))  # credentials, but in clear on the wire


def test_kafka_waits_for_its_controller_port_too(tmp_path):
    """A broker still shutting down holds both its ports: starting the next one before both are free fails to bind
    (seen between two benchmarks run back to back)."""
    import socket

    from lienthong_tools.infra.servers import LocalKafka

    with socket.socket() as client_port:
        client_port.bind(("127.0.0.1", 0))
        port = client_port.getsockname()[1]
    kafka = LocalKafka("kafka", "127.0.0.1", port, tmp_path)
    assert kafka.ports == (port, port + 1)
    with socket.socket() as controller:
        controller.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        controller.bind(("127.0.0.1", port + 1))
        controller.listen()
        assert not kafka._port_frees_up(seconds=0.6)
    assert kafka._port_frees_up(seconds=0.6)


def test_the_registry_is_reread_when_its_file_changes_and_a_broken_edit_keeps_the_last_good_one(tmp_path,
                                                                                                monkeypatch):
    """Routing acts on an agency added or revoked without a restart; a half-written file changes nothing."""
    import os
    import shutil

    from lienthong import identity

    path = tmp_path / "clients.toml"
    shutil.copy(identity.registry_path(), path)
    monkeypatch.setenv("LIENTHONG_CLIENTS", str(path))
    assert "ward-pilot" not in {c.name for c in identity.registry().agencies}
    identity.save(identity.registry(), add=identity.Client(name="ward-pilot", kind="agency", units=("DONGSON",)))
    assert identity.registry().refusal("ward-pilot", "DONGSON") is None
    good = path.read_text()
    path.write_text(good + "\n[[client]\nname = ")  # an operator's edit, half-way
    os.utime(path, ns=(1, 2))
    assert identity.registry().refusal("ward-pilot", "DONGSON") is None
    path.write_text(good.replace('units = ["DONGSON"]', 'units = ["HACTHANH"]'))
    assert identity.registry().refusal("ward-pilot", "DONGSON") == "ward-pilot does not act for DONGSON"


def _hold(lock, log, name):  # noqa: ANN001 - run in a child process
    import time

    from lienthong_tools.infra.artifacts import _exclusive

    with _exclusive(lock):
        with open(log, "a") as out:
            out.write(f"in {name}\n")
        time.sleep(0.3)
        with open(log, "a") as out:
            out.write(f"out {name}\n")


def test_downloads_and_builds_are_done_by_one_process_at_a_time(tmp_path):
    """Two test workers on a fresh machine both found the Kafka jars missing; the second's rename then failed with
    'File exists'. The cache's lock makes the second wait and then find them complete."""
    import multiprocessing

    log = tmp_path / "log"
    workers = [multiprocessing.get_context("spawn").Process(target=_hold, args=(tmp_path / "x.lock", log, n))
               for n in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    lines = log.read_text().split("\n")[:-1]
    assert [line.split()[0] for line in lines] == ["in", "out", "in", "out"]
    assert lines[0].split()[1] == lines[1].split()[1]  # whoever got in first went out before the other came in


def test_a_three_node_cluster_sits_on_consecutive_ports_and_keeps_its_size(tmp_path, monkeypatch):
    import json

    from lienthong_tools.infra.environment import Environment
    from lienthong.settings import KafkaSettings

    monkeypatch.setenv("LIENTHONG_STATE", str(tmp_path))
    env = Environment.from_settings(KafkaSettings(bootstrap_servers="127.0.0.1:29092"), name="c3", brokers=3)
    assert [(n.name, n.node_id, n.port, n.controller_port) for n in env.brokers] == [
        ("kafka", 1, 29092, 29093), ("kafka-2", 2, 29094, 29095), ("kafka-3", 3, 29096, 29097)]
    assert {n.bootstrap for n in env.brokers} == {"127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"}
    assert env.kafka.replication == 3
    (tmp_path / "c3" / "kafka-cluster.json").write_text(json.dumps({"id": "x", "nodes": 3}))
    assert len(Environment.from_settings(KafkaSettings(bootstrap_servers="127.0.0.1:29092"), name="c3").brokers) == 3
    with pytest.raises(RuntimeError, match="holds a 3-node Kafka cluster, not 1"):
        Environment.from_settings(KafkaSettings(bootstrap_servers="127.0.0.1:29092"), name="c3", brokers=1)


def test_a_port_taken_between_the_check_and_the_bind_fails_fast_and_says_so(tmp_path, monkeypatch):
    """Every test session and service here picks free ports in one range: another may bind one first. The server
    does not always exit (a KRaft node keeps running unbound), so its log is read; a line an earlier launch left in
    the (appended) log does not count."""
    import time

    import pytest

    from lienthong_tools.infra.servers import LocalFerretDB, PortTaken

    server = LocalFerretDB("ferretdb", "127.0.0.1", 20001, tmp_path)
    server.log_file.write_text("an earlier launch: bind: address already in use\n")
    server.log_start = server.log_file.stat().st_size
    monkeypatch.setattr(LocalFerretDB, "pid", lambda self: 1)  # still running

    async def healthy(self) -> bool:  # noqa: ANN001 - never answers
        return False

    monkeypatch.setattr(LocalFerretDB, "healthy", healthy)
    monkeypatch.setattr("lienthong_tools.infra.servers.START_TIMEOUT_S", 1.0)
    with pytest.raises(RuntimeError) as waited:  # the earlier line is not this launch's: it waits, then times out
        server._wait_healthy()
    assert not isinstance(waited.value, PortTaken)
    with server.log_file.open("a") as log:
        log.write("listen tcp 127.0.0.1:20001: bind: address already in use\n")
    started = time.monotonic()
    with pytest.raises(PortTaken):
        server._wait_healthy()
    assert time.monotonic() - started < 1.0


def test_the_kit_starts_its_servers_again_on_other_ports_when_one_was_taken(tmp_path, monkeypatch):
    from lienthong_testkit import servers as kit
    from lienthong_tools.infra.servers import PortTaken

    tries = []

    class FlakyEnvironment:
        def __init__(self, kafka, mongo) -> None:  # noqa: ANN001
            self.kafka, self.mongo = kafka, mongo
            tries.append(self)

        def up(self) -> None:
            if len(tries) == 1:
                raise PortTaken("kafka: a port was taken")

        def down(self) -> None:
            pass

    monkeypatch.setattr(kit, "Environment", FlakyEnvironment)
    env = kit._started(tmp_path)
    assert env is tries[1] and env.kafka.state == tmp_path / "retry-1"  # a state of its own, fresh ports
    assert (tries[0].kafka.port, tries[0].mongo.port) != (env.kafka.port, env.mongo.port)
