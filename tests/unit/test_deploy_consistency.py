"""docker-compose.yml cannot run here (no Docker engine): keep it consistent with the code instead."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lienthong.infra.artifacts import KAFKA_VERSION

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
        assert env["MONGODB_URI"].startswith("mongodb://mongo:27017/")
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        settings = (ROOT / "services" / name / "src" / name / "settings.py").read_text()
        assert re.search(rf"http_port: int = Field\({port}\b", settings)


def test_topic_job_creates_the_catalogue():
    job = compose()["services"]["topics"]
    assert job["command"] == ["lienthong", "topics", "create"]
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"
