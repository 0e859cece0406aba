"""Fetch and build the servers once; later starts reuse the cache (keyed by a hash of the recipe)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lienthong_tools.infra.paths import assets_dir, cache_dir

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
    with _exclusive(dest.parent / f"{dest.name}.lock"):  # parallel test workers on a fresh machine fetch it once
        if not (dest / ".complete").exists():
            _fetch_kafka(pom, dest)
    return dest / "libs"


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One process at a time (others wait) across the machine: the cache is shared by every checkout and worker."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_kafka(pom: Path, dest: Path) -> None:
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


# FerretDB v1.24.2's SQLite backend never uses its own `_id` index: the index is built on
# `_ferretdb_sjson->"_id"` but lookups, updates and deletes filter on `_ferretdb_sjson->'$._id'`, an equal value
# that SQLite does not match to the index expression, so every update and delete scans the whole table (measured:
# 10 ms at 2,000 documents, 60 ms at 20,000). And the `_id` pushdown is only tried when the filter has no other key,
# so a compare-and-set filter such as {_id, seq} scans too. Both patches only narrow the rows SQLite returns: the
# handlers still apply the whole filter to every document.
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_PATCHES = [
    ("internal/backends/sqlite/metadata/metadata.go",
     'IDColumn = DefaultColumn + "->\'$._id\'"', 'IDColumn = DefaultColumn + "->\'_id\'"'),
    ("internal/backends/sqlite/collection.go", "if params.Filter.Len() == 1 {", "if params.Filter.Len() >= 1 {"),
    # `{_id: {$in: [strings]}}` reads the listed documents through the same index instead of scanning, so a batch
    # of dossiers or rollup rows is one query, not one round trip each (only the Query path; Explain is unchanged).
    ("internal/backends/sqlite/collection.go",
     "\t\tcase string, types.ObjectID:\n\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n",
     "\t\tcase *types.Document:\n\t\t\twhereClause, args = idInClause(v.(*types.Document))\n"
     "\t\tcase string, types.ObjectID:\n\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n"),
    ("internal/backends/sqlite/collection.go", "// collection implements backends.Collection interface.\n",
     "func idInClause(cond *types.Document) (string, []any) {\n"
     "\tif cond.Len() != 1 {\n\t\treturn \"\", nil\n\t}\n"
     "\tin, _ := cond.Get(\"$in\")\n"
     "\tarr, ok := in.(*types.Array)\n"
     "\tif !ok || arr.Len() == 0 {\n\t\treturn \"\", nil\n\t}\n"
     "\tmarks := make([]string, 0, arr.Len())\n"
     "\targs := make([]any, 0, arr.Len())\n"
     "\tfor i := 0; i < arr.Len(); i++ {\n"
     "\t\te, _ := arr.Get(i)\n"
     "\t\ts, isString := e.(string)\n"
     "\t\tif !isString {\n\t\t\treturn \"\", nil\n\t\t}\n"
     "\t\tmarks = append(marks, \"?\")\n"
     "\t\targs = append(args, string(must.NotFail(sjson.MarshalSingleValue(s))))\n"
     "\t}\n"
     "\treturn fmt.Sprintf(` WHERE %s IN (%s)`, metadata.IDColumn, strings.Join(marks, \", \")), args\n"
     "}\n\n// collection implements backends.Collection interface.\n"),
    # An update statement kept its query's rows (and so a pooled SQLite connection) open while it wrote through a
    # second connection, and until the whole command ended (a `defer` in a loop); findAndModify the same. With the
    # pool's 100 connections, concurrent update commands from a few clients held them all and waited for one more:
    # the server hung for good (bench_e2e at 200 filings/s; a goroutine dump showed 100 open rows, 40 writers
    # waiting). The matched documents are now read, and the rows released, before anything is written.
    ("internal/handler/msg_update.go",
     '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n',
     "\t\tmatches, err := iterator.ConsumeValues(iter)\n\t\tif err != nil {\n"
     "\t\t\treturn 0, 0, nil, lazyerrors.Error(err)\n\t\t}\n\n"
     "\t\titer = iterator.Values(iterator.ForSlice(matches))\n\t\tcloser.Add(iter)\n\n"
     '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n'),
    ("internal/handler/msg_findandmodify.go",
     "\titer = common.LimitIterator(iter, closer, 1)\n",
     "\titer = common.LimitIterator(iter, closer, 1)\n\n"
     "\tmatches, err := iterator.ConsumeValues(iter)\n\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n\n"
     "\titer = iterator.Values(iterator.ForSlice(matches))\n\tcloser.Add(iter)\n"),
]


def ferretdb_binary() -> Path:
    """FerretDB v1 (SQLite backend) built from the Go module proxy through our embedding main package, with
    FERRETDB_PATCHES applied to a copy of the module (`replace` directive; the module cache stays untouched)."""
    src = assets_dir() / "ferretdb"
    recipe = [src / "main.go", src / "go.mod", src / "go.sum"]
    dest = cache_dir() / f"ferretdb-{_digest(*recipe, extra=repr(FERRETDB_PATCHES))}" / "ferretdb"
    if dest.exists():
        return dest
    with _exclusive(dest.parent.parent / f"{dest.parent.name}.lock"):
        if not dest.exists():
            _build_ferretdb(src, dest)
    return dest


def _build_ferretdb(src: Path, dest: Path) -> None:
    go = require("go", "build FerretDB", "apt-get install golang (Go >= 1.24)")
    env = {**os.environ, "CGO_ENABLED": "0"}
    build = dest.parent / "build"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(src, build / "main")
    _run([go, "mod", "download", FERRETDB_MODULE], cwd=build / "main", log_name="ferretdb-download.log", env=env)
    listed = subprocess.run([go, "list", "-m", "-json", FERRETDB_MODULE], cwd=build / "main", env=env,
                            capture_output=True, text=True, check=True)
    module = build / "FerretDB"
    shutil.copytree(json.loads(listed.stdout)["Dir"], module, copy_function=shutil.copyfile)  # cache is read-only
    for relative, old, new in FERRETDB_PATCHES:
        file = module / relative
        text = file.read_text()
        if old not in text:
            raise RuntimeError(f"FerretDB patch no longer applies: {old!r} not found in {file}")
        file.write_text(text.replace(old, new))
    _run([go, "mod", "edit", f"-replace={FERRETDB_MODULE}=../FerretDB"], cwd=build / "main",
         log_name="ferretdb-build.log", env=env)
    tmp = dest.with_suffix(".tmp")
    _run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=build / "main", log_name="ferretdb-build.log", env=env)
    tmp.rename(dest)
    shutil.rmtree(build)
