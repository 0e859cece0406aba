"""docker-compose.yml cannot run here (no Docker engine): keep it consistent with the code instead."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lienthong_tools.infra.artifacts import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"intake": 8081, "routing": 8082, "notify": 8083, "stats": 8084}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_uses_the_same_kafka_version_as_deploy_local():
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    from lienthong_testkit.servers import KAFKA_IMAGE  # the tests' and the kit's testcontainers image

    assert KAFKA_IMAGE == f"apache/kafka:{KAFKA_VERSION}"


def test_every_service_is_built_from_its_dockerfile_with_its_port_and_env():
    services = compose()["services"]
    for name, port in SERVICES.items():
        svc = services[name]
        dockerfile = ROOT / svc["build"]["dockerfile"]
        assert dockerfile.is_file() and dockerfile.parent.name == name
        assert f"EXPOSE {port}" in dockerfile.read_text()
        assert svc["ports"] == [f"{port}:{port}"]
        env = svc["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["MONGODB_URI"].startswith("mongodb://${LIENTHONG_MONGO_USER:-lienthong}:${LIENTHONG_MONGO_PASSWORD")
        assert "@mongo:27017/" in env["MONGODB_URI"]
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        settings = (ROOT / "services" / name / "src" / name / "settings.py").read_text()
        assert re.search(rf"http_port: int = Field\({port}\b", settings)


def test_topic_job_creates_the_catalogue():
    job = compose()["services"]["topics"]
    assert job["command"] == ["lienthong", "topics", "create"]
    assert job["build"]["dockerfile"] == "tools/Dockerfile"  # the operators' image: the services' carry no tooling
    assert job["depends_on"]["provision"]["condition"] == "service_completed_successfully"  # after the ACLs


def test_every_service_connects_as_its_own_principal_with_a_mounted_password():
    services = compose()["services"]
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SSL_CAFILE"] == "/run/lienthong/clients/ca.pem"  # in the volume it mounts
        assert env["KAFKA_SASL_USERNAME"] == name
        assert env["KAFKA_SASL_PASSWORD_FILE"] == f"/run/lienthong/clients/{name}"
        assert "KAFKA_SASL_PASSWORD" not in env
        # The clients' secrets read-only; the broker's (admin's password) never.
        assert services[name]["volumes"] == ["client-secrets:/run/lienthong/clients:ro"]
    assert services["topics"]["environment"]["KAFKA_SASL_USERNAME"] == "admin"


def test_the_compose_broker_is_provisioned_like_the_local_one():
    from lienthong_tools.infra.servers import broker_security
    from lienthong_tools.infra.tls import BrokerTls

    services = compose()["services"]
    assert services["credentials"]["command"] == ["lienthong", "credentials", "/run/lienthong"]
    kafka = services["kafka"]
    assert kafka["entrypoint"] == ["bash", "/opt/lienthong/kafka-start.sh"]
    assert "broker-secrets:/run/lienthong/broker:ro" in kafka["volumes"]
    assert kafka["depends_on"]["credentials"]["condition"] == "service_completed_successfully"
    start = (ROOT / "deploy" / "compose" / "kafka-start.sh").read_text()
    # The security settings are the ones `infra up` writes (broker_security), for listeners of the same names.
    assert 'cat "$secrets/broker-security.properties" >> "$props"' in start
    tls = BrokerTls(Path("/run/lienthong/broker/broker.pem"), Path("/run/lienthong/broker/ca.pem"))
    listeners = {line.split("=", 1)[0].split(".")[2] for line in broker_security("x", tls)
                 if line.startswith("listener.name.")}
    assert listeners == {"client", "controller"}
    assert "listeners=CLIENT://:9092,CONTROLLER://:9093" in start and "--add-scram" in start
    provision = (ROOT / "deploy" / "compose" / "provision.Dockerfile").read_text()
    assert f"apache/kafka:{KAFKA_VERSION}" in provision and "deploy/local/kafka/Provision.java" in provision
    assert "LIENTHONG_KAFKA_CA_FILE=/run/lienthong/broker/ca.pem" in provision  # TLS, trusting the job's CA
    assert services["topics"]["depends_on"]["provision"]["condition"] == "service_completed_successfully"


def test_mongo_runs_with_authentication():
    mongo = compose()["services"]["mongo"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:?")
    start = (ROOT / "deploy" / "compose" / "mongo-start.sh").read_text()
    assert "--keyFile" in start and "--replSet rs0" in start
    init = (ROOT / "deploy" / "compose" / "mongo-init.js").read_text()
    assert 'role: "readWrite", db: "lienthong"' in init
