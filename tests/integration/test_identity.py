"""Who may do what, on the real broker: every connection authenticates (SASL/SCRAM-SHA-512), and the
StandardAuthorizer with the ACLs derived from the client registry lets each principal do only its role."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid

import jwt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from lienthong.auth import SUBMIT, Verifier
from lienthong.identity import REGISTRY
from lienthong.settings import KafkaSettings
from tests.tokens import ISSUER
from lienthong.topics import DOSSIER_LIFECYCLE, OUTCOMES_DLQ, outcomes_topic, work_topic

pytestmark = pytest.mark.integration


def local(infra):  # noqa: ANN001, ANN201
    if infra.local is None:
        pytest.fail(f"the identity tests provision principals on deploy/local servers, not on {infra.provider}")
    return infra.local.kafka


async def produces(kafka: KafkaSettings, topic: str) -> bool:
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", enable_idempotence=True,
                                request_timeout_ms=5000, metadata_max_age_ms=5000)
    try:
        await asyncio.wait_for(producer.start(), 8)
        await asyncio.wait_for(producer.send_and_wait(topic, b"probe", key=b"IDENTITY-PROBE"), 15)
        return True
    except (KafkaError, asyncio.TimeoutError, OSError):
        return False
    finally:
        await asyncio.wait_for(producer.stop(), 15)


async def consumes(kafka: KafkaSettings, topic: str, group: str | None) -> bool:
    consumer = AIOKafkaConsumer(topic, **kafka.client_options(), group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(consumer.start(), 8)
        await asyncio.wait_for(consumer.getmany(timeout_ms=3000), 15)
        if group is not None:
            await asyncio.wait_for(consumer.commit(), 15)
        return True
    except (KafkaError, asyncio.TimeoutError, OSError):
        return False
    finally:
        await asyncio.wait_for(consumer.stop(), 15)


async def test_no_credentials_or_wrong_ones_reach_no_topic(infra):
    kafka = local(infra)
    anonymous = infra.kafka.model_copy(update={"security_protocol": "PLAINTEXT"})
    wrong = kafka.client_settings("police", infra.kafka).as_client("police", "not-the-password")
    unknown = infra.kafka.as_client("nobody", "whatever")
    police = kafka.client_settings("police", infra.kafka)
    assert police.encrypted and await produces(police, outcomes_topic("police").name)
    # The right password is not enough: only over TLS, and only to a broker whose certificate the client trusts.
    in_clear = police.model_copy(update={"security_protocol": "SASL_PLAINTEXT"})
    untrusting = police.model_copy(update={"ssl_cafile": None})  # the system's CAs never signed the local broker
    for who in (anonymous, wrong, unknown, in_clear, untrusting):
        assert not await produces(who, outcomes_topic("police").name)
        assert not await consumes(who, DOSSIER_LIFECYCLE.name, None)


async def test_each_principal_may_do_its_role_and_nothing_else(infra):
    kafka = local(infra)
    police = kafka.client_settings("police", infra.kafka)
    stats = kafka.client_settings("stats", infra.kafka)
    own_work, own_outcomes = work_topic("police").name, outcomes_topic("police").name
    # An agency answers its own work on its own topic; it may not forge lifecycle events, read citizens' dossiers,
    # read another agency's assignments or speak on another agency's topic.
    assert await produces(police, own_outcomes)
    assert await consumes(police, own_work, f"agency-police-{uuid.uuid4().hex[:4]}")
    assert not await produces(police, DOSSIER_LIFECYCLE.name)
    assert not await consumes(police, DOSSIER_LIFECYCLE.name, None)
    assert not await consumes(police, own_work, f"routing-{uuid.uuid4().hex[:4]}")  # not its group
    assert not await consumes(police, work_topic("commune-one-stop").name, f"agency-police-{uuid.uuid4().hex[:4]}")
    assert not await produces(police, outcomes_topic("commune-one-stop").name)
    assert not await produces(police, OUTCOMES_DLQ)
    # A service reads what it projects, in its own groups, and writes only its dead letters.
    assert await consumes(stats, DOSSIER_LIFECYCLE.name, f"stats-{uuid.uuid4().hex[:4]}")
    assert not await produces(stats, DOSSIER_LIFECYCLE.name)
    assert not await produces(stats, own_outcomes)
    assert not await consumes(stats, own_work, f"stats-{uuid.uuid4().hex[:4]}")


async def test_a_client_added_then_revoked_is_refused_without_any_restart(infra, tmp_path):
    kafka = local(infra)
    clients = tmp_path / "clients.toml"
    shutil.copy(str(REGISTRY), clients)  # the operators' registry, which `clients add|revoke` edits
    name = f"xa-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "LIENTHONG_CLIENTS": str(clients), "LIENTHONG_STATE": str(kafka.state.parent),
           "KAFKA_BOOTSTRAP_SERVERS": infra.kafka.bootstrap_servers}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "lienthong_tools.cli", "--env", kafka.state.name, "clients", *args],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cli("add", name, "--units", "HACTHANH")  # an agency: its own work and outcomes topics come with it
    password = out.strip().rsplit(" ", 1)[-1]
    assert name in cli("list") and f"unit.outcomes.{name}" in out
    agency = infra.kafka.as_client(name, password)
    assert await produces(agency, outcomes_topic(name).name)
    assert await consumes(agency, work_topic(name).name, f"agency-{name}-x")
    assert not await produces(agency, DOSSIER_LIFECYCLE.name)
    token = ISSUER.issue(name, [SUBMIT], ["HACTHANH"])
    assert Verifier(ISSUER.settings()).verify(token).units == {"HACTHANH"}
    cli("revoke", name)
    assert name not in cli("list")
    assert not await produces(agency, outcomes_topic(name).name)
    with pytest.raises(jwt.InvalidTokenError):  # its bearer tokens went with it (the services' revocation list)
        Verifier(ISSUER.settings()).verify(token)


def compose_broker_is_certified_for_its_clients(secrets) -> None:  # noqa: ANN001
    """The broker's keystore holds a certificate for `kafka` signed by the CA the services trust, the key stays
    with the broker, and its settings listen for clients over TLS with that keystore."""
    from cryptography import x509

    ca = x509.load_pem_x509_certificate((secrets / "clients" / "ca.pem").read_bytes())
    keystore = (secrets / "broker" / "broker.pem").read_bytes()
    assert b"PRIVATE KEY" in keystore and not (secrets / "clients" / "broker.pem").exists()
    leaf = x509.load_pem_x509_certificates(keystore[keystore.index(b"-----BEGIN CERTIFICATE"):])[0]
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kafka" in names.get_values_for_type(x509.DNSName)
    assert (secrets / "broker" / "ca.key").stat().st_mode & 0o077 == 0
    settings = (secrets / "broker" / "broker-security.properties").read_text()
    assert "CLIENT:SASL_SSL" in settings and f"ssl.keystore.location={secrets / 'broker' / 'broker.pem'}" in settings


async def test_a_broker_provisioned_from_the_secrets_directory_admits_each_client_to_its_role(infra, tmp_path):
    """docker-compose's path (`lienthong credentials DIR`, then Provision.java as admin on the plan, services
    reading KAFKA_SASL_PASSWORD_FILE) on the real broker; only the Docker wiring itself is not run here."""
    kafka = local(infra)
    name = f"compose-{uuid.uuid4().hex[:6]}"
    registry_file = tmp_path / "clients.toml"  # a registry of its own: the plan replaces its users' passwords
    registry_file.write_text(f'[[client]]\nname = "{name}"\nkind = "agency"\nunits = ["HACTHANH"]\n'
                             f'groups = ["agency-{name}"]\n')
    done = subprocess.run([sys.executable, "-m", "lienthong_tools.cli", "credentials", str(tmp_path / "secrets")],
                          env={**os.environ, "LIENTHONG_CLIENTS": str(registry_file)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    secrets = tmp_path / "secrets"
    assert (secrets / "clients" / name).stat().st_mode & 0o077 == 0  # its password: its owner's alone
    assert not (secrets / "clients" / "admin").exists()  # services never mount the broker's secrets
    assert f"user {name} " in (secrets / "broker" / "provision.plan").read_text()
    compose_broker_is_certified_for_its_clients(secrets)
    from lienthong.messaging import ensure_topics

    await ensure_topics(infra.kafka, (work_topic(name), outcomes_topic(name)))
    kafka.provision((secrets / "broker" / "provision.plan").read_text())
    try:
        # The compose CA signed compose's broker, not this one: here the client trusts this broker's CA.
        agency = KafkaSettings(bootstrap_servers=infra.kafka.bootstrap_servers, sasl_username=name,
                               sasl_password_file=secrets / "clients" / name, security_protocol="SASL_SSL",
                               ssl_cafile=kafka.ca.ca_file)
        assert await produces(agency, outcomes_topic(name).name)
        assert await consumes(agency, work_topic(name).name, f"agency-{name}-x")
        assert not await produces(agency, DOSSIER_LIFECYCLE.name)
        assert not await consumes(agency, work_topic("commune-one-stop").name, f"agency-{name}-y")
        # Running it again keeps every password (a restarted deployment changes nobody's).
        before = (secrets / "clients" / name).read_text()
        subprocess.run([sys.executable, "-m", "lienthong_tools.cli", "credentials", str(secrets)], check=True,
                       env={**os.environ, "LIENTHONG_CLIENTS": str(registry_file)}, capture_output=True, timeout=120)
        assert (secrets / "clients" / name).read_text() == before
    finally:
        kafka.provision(f"nouser {name}\nrevoke User:{name}")
