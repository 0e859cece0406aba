"""lienthong-testkit's fixtures, as an agency's test suite uses them: two parallel workers (pytest-xdist) each get
servers of their own on free ports with separate state, and every server is gone when the run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from lienthong_tools.infra.servers import port_open

pytestmark = pytest.mark.integration

SUITE = '''
import json, os, pathlib

def test_servers_of_my_own(lienthong_servers):
    kafka = lienthong_servers.kafka.bootstrap_servers
    mongo = lienthong_servers.mongo.uri
    local = lienthong_servers.local
    out = pathlib.Path(os.environ["KIT_OUT"]) / (os.environ.get("PYTEST_XDIST_WORKER", "main") + ".json")
    out.write_text(json.dumps({"kafka": kafka, "mongo": mongo, "provider": lienthong_servers.provider,
                               "state": str(local.kafka.state) if local else None,
                               "pids": [s.pid() for s in local.servers] if local else []}))
'''


def test_parallel_workers_get_their_own_servers_and_leave_nothing_running(tmp_path):
    (tmp_path / "test_kit_suite.py").write_text(textwrap.dedent(SUITE))
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "each",
                           "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path, env={**env, "KIT_OUT": str(out)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    workers = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(workers) == {"gw0", "gw1"}, workers
    first, second = workers.values()
    assert first["provider"] == second["provider"] == "local"
    assert first["kafka"] != second["kafka"] and first["mongo"] != second["mongo"] and first["state"] != second["state"]
    for worker in workers.values():  # stopped at the end of each worker's session
        host, port = worker["kafka"].rsplit(":", 1)
        assert not port_open(host, int(port))
        for pid in worker["pids"]:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
