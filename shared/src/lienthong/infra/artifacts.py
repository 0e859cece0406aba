"""Fetch and build the servers once; later starts reuse the cache (keyed by a hash of the recipe)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lienthong.infra.paths import assets_dir, cache_dir

KAFKA_VERSION = "4.4.0"  # newest release our suite passes against with aiokafka 0.14 / FastStream 0.7
LOG4J_VERSION = "2.25.3"


class MissingTool(RuntimeError):
    """A toolchain needed to provision a server is not installed."""


def require(tool: str, why: str, install: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingTool(f"`{tool}` not found on PATH: it is needed to {why}. Install it, e.g. `{install}`.")
    return path


def _digest(*files: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _run(cmd: list[str], cwd: Path, log_name: str, env: dict[str, str] | None = None) -> None:
    log = cache_dir() / log_name
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}); full log: {log}\n{tail}")


def kafka_classpath() -> Path:
    """Directory of the broker's jars: kafka_2.13 and its runtime dependencies, plus the log4j2 backend."""
    pom = assets_dir() / "kafka" / "pom.xml"
    dest = cache_dir() / f"kafka-{KAFKA_VERSION}-{_digest(pom, extra=KAFKA_VERSION + LOG4J_VERSION)}"
    if (dest / ".complete").exists():
        return dest / "libs"
    require("java", "run the Kafka broker", "apt-get install openjdk-17-jre-headless")
    mvn = require("mvn", "download Kafka from Maven Central", "apt-get install maven")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        _run(
            [
                mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}", f"-Dlog4j.version={LOG4J_VERSION}",
                "-DincludeScope=runtime", f"-DoutputDirectory={tmp}/libs",
            ],
            cwd=pom.parent,
            log_name="kafka-maven.log",
        )
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        shutil.move(f"{tmp}/libs", dest / "libs")
    (dest / ".complete").touch()
    return dest / "libs"


def ferretdb_binary() -> Path:
    """FerretDB v1 (SQLite backend) built from the Go module proxy through our embedding main package."""
    src = assets_dir() / "ferretdb"
    recipe = [src / "main.go", src / "go.mod", src / "go.sum"]
    dest = cache_dir() / f"ferretdb-{_digest(*recipe)}" / "ferretdb"
    if dest.exists():
        return dest
    go = require("go", "build FerretDB", "apt-get install golang (Go >= 1.24)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    env = {**os.environ, "CGO_ENABLED": "0"}
    _run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=src, log_name="ferretdb-build.log", env=env)
    tmp.rename(dest)
    return dest
