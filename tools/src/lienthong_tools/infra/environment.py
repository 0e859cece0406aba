"""One local environment: the Kafka cluster (one node, or three) and the MongoDB-compatible server named by the
settings."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from lienthong_tools.infra.paths import state_dir
from lienthong_tools.infra.servers import LocalFerretDB, LocalKafka, LocalServer
from lienthong.messaging import ensure_topics
from lienthong.settings import KafkaSettings, MongoSettings
from lienthong.topics import all_topics


@dataclass
class Environment:
    kafka: LocalKafka  # node 1: the cluster's first address, where its ACLs are applied
    mongo: LocalFerretDB
    more_brokers: tuple[LocalKafka, ...] = ()

    @classmethod
    def from_settings(
        cls, kafka: KafkaSettings | None = None, mongo: MongoSettings | None = None, name: str = "dev",
        brokers: int | None = None,
    ) -> Environment:
        """`brokers` nodes (default: as many as the environment was first started with, else one), node 1 at the
        first address of KAFKA_BOOTSTRAP_SERVERS and the others on the ports after it."""
        kafka, mongo = kafka or KafkaSettings(), mongo or MongoSettings()
        state = state_dir(name)
        khost, _, kport = kafka.servers[0].rpartition(":")
        mhost, mport = mongo.host_port
        recorded = state / "kafka-cluster.json"
        formatted = json.loads(recorded.read_text())["nodes"] if recorded.exists() else None
        if brokers and formatted and brokers != formatted:
            raise RuntimeError(f"{state} holds a {formatted}-node Kafka cluster, not {brokers}: `lienthong infra down`, "
                             "then remove that directory to change its size")
        size = brokers or formatted or 1
        nodes = [LocalKafka("kafka" if i == 1 else f"kafka-{i}", khost, int(kport) + 2 * (i - 1), state, i, size)
                 for i in range(1, size + 1)]
        return cls(kafka=nodes[0], mongo=LocalFerretDB("ferretdb", mhost, mport, state), more_brokers=tuple(nodes[1:]))

    @property
    def brokers(self) -> tuple[LocalKafka, ...]:
        return (self.kafka, *self.more_brokers)

    @property
    def servers(self) -> tuple[LocalServer, ...]:
        return (*self.brokers, self.mongo)

    def up(self) -> dict[str, str]:
        # Every node is launched before any is waited for: a KRaft node answers once a majority of controllers runs.
        result = {s.name: s.launch() for s in self.servers}
        for server in self.servers:
            server.settle()
        created = asyncio.run(ensure_topics(self.kafka.admin_settings(), all_topics()))
        result["topics"] = f"{len(created)} created" if created else "all present"
        if self.more_brokers:
            result["bootstrap"] = self.kafka.bootstrap
        return result

    def down(self) -> dict[str, str]:
        return {s.name: s.stop() for s in reversed(self.servers)}

    def status(self) -> dict[str, dict[str, object]]:
        return {
            s.name: {
                "address": s.address,
                "pid": s.pid(),
                "healthy": asyncio.run(s.healthy()),
                "log": str(s.log_file),
            }
            for s in self.servers
        }
