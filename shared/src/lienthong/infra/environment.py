"""One local environment: the Kafka broker and the MongoDB-compatible server named by the settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lienthong.infra.paths import state_dir
from lienthong.infra.servers import LocalFerretDB, LocalKafka, LocalServer
from lienthong.messaging import ensure_topics
from lienthong.settings import KafkaSettings, MongoSettings
from lienthong.topics import all_topics


@dataclass
class Environment:
    kafka: LocalKafka
    mongo: LocalFerretDB

    @classmethod
    def from_settings(
        cls, kafka: KafkaSettings | None = None, mongo: MongoSettings | None = None, name: str = "dev"
    ) -> Environment:
        kafka, mongo = kafka or KafkaSettings(), mongo or MongoSettings()
        state = state_dir(name)
        khost, _, kport = kafka.servers[0].rpartition(":")
        mhost, mport = mongo.host_port
        return cls(
            kafka=LocalKafka("kafka", khost, int(kport), state),
            mongo=LocalFerretDB("ferretdb", mhost, mport, state),
        )

    @property
    def servers(self) -> tuple[LocalServer, ...]:
        return (self.kafka, self.mongo)

    def up(self) -> dict[str, str]:
        result = {s.name: s.start() for s in self.servers}
        created = asyncio.run(ensure_topics(self.kafka.admin_settings(), all_topics()))
        result["topics"] = f"{len(created)} created" if created else "all present"
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
