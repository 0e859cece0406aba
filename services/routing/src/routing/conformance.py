"""`lienthong conformance` (or `python -m routing.conformance`): would routing accept what an agency system sent?

Reads the records an agency system produced — its `unit.outcomes.<agency>` topic as it stands, or a file of JSON
lines (one CloudEvent per line) — and judges each exactly as routing would now (`Router.judge`, on routing's
current state), changing nothing: the schema, whether it is an outcome at all, whether the agency acts for the unit
it names, whether the dossier exists, and whether it answers the current assignment (`dossierseq`) as the workflow
allows. Prints one line per record (or `--json`); exits 1 if any record would be refused.
A citizen's action read from a file has no header, so the portal's assertion is checked only on the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from lienthong.auth import CITIZEN_ASSERTION_HEADER
from lienthong.catalogue import catalogue
from lienthong.contracts import CloudEvent, parse_event
from lienthong.contracts.errors import summarize
from lienthong.messaging import partitions_of
from lienthong.settings import KafkaSettings, MongoSettings
from lienthong.store import database, make_client
from lienthong.topics import outcomes_topic
from routing.router import Refused, Router
from routing.store import WorkflowStore


@dataclass(frozen=True)
class Verdict:
    where: str  # "line 3" or "unit.outcomes.tax/0@12"
    event_id: str | None
    accepted: bool
    check: str  # ok, schema, type, sender, dossier, citizen, assignment
    reason: str


@dataclass(frozen=True)
class Sent:
    where: str
    value: bytes
    assertion: str | None  # the citizen-assertion header, when read from the topic


async def judge(router: Router, agency: str, sent: Sent, *, from_topic: bool) -> Verdict:
    try:
        event: CloudEvent = parse_event(sent.value)
    except ValidationError as exc:  # field names and error kinds only: a record may hold personal data
        return Verdict(sent.where, None, False, "schema", summarize(exc))
    record = await router.store.load(event.subject)
    if record is not None and event.id in record.applied:
        return Verdict(sent.where, event.id, True, "ok", "applied when it came (a redelivery changes nothing)")
    if record is not None and event.id in record.refused:
        return Verdict(sent.where, event.id, False, "assignment", f"refused when it came: {record.refused[event.id]}")
    verdict = router.judge(event, agency, record, assertion=sent.assertion, check_assertion=from_topic)
    if isinstance(verdict, Refused):
        return Verdict(sent.where, event.id, False, verdict.check, verdict.reason)
    effects = ", ".join(data.EVENT_TYPE for _, data in verdict.events)
    return Verdict(sent.where, event.id, True, "ok", f"would be applied ({effects})")


def from_file(path: Path) -> list[Sent]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Sent(f"line {n}", line.encode(), None) for n, line in enumerate(lines, 1) if line.strip()]


async def from_topic(kafka: KafkaSettings, topic: str) -> AsyncIterator[Sent]:
    """Every record the topic holds now, partition by partition, in order."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    if r.offset < end[tp]:
                        headers = dict(r.headers or ())
                        assertion = headers.get(CITIZEN_ASSERTION_HEADER)
                        yield Sent(f"{tp.topic}/{tp.partition}@{r.offset}", r.value or b"",
                                   assertion.decode() if assertion else None)
    finally:
        await consumer.stop()


async def run(agency: str, file: Path | None, topic: str | None, kafka: KafkaSettings | None = None) -> list[Verdict]:
    mongo = MongoSettings()
    client = make_client(mongo)
    try:
        async def publish_nothing(*_: object) -> None:
            return None

        router = Router(WorkflowStore(database(client, mongo)), catalogue(), publish_nothing, publish_nothing,
                        publish_nothing)
        if file is not None:
            return [await judge(router, agency, sent, from_topic=False) for sent in from_file(file)]
        return [await judge(router, agency, sent, from_topic=True)
                async for sent in from_topic(kafka or KafkaSettings(), topic or outcomes_topic(agency).name)]
    finally:
        await client.close()


def main(argv: list[str] | None = None, kafka: KafkaSettings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lienthong conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agency", required=True, help="the agency system that sent the records (registry name)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", type=Path, help="JSON lines, one CloudEvent per line")
    source.add_argument("--topic", help="a topic to read (default: unit.outcomes.<agency>)")
    parser.add_argument("--json", action="store_true", help="one JSON object per record")
    args = parser.parse_args(argv)
    verdicts = asyncio.run(run(args.agency, args.file, args.topic, kafka))
    for v in verdicts:
        if args.json:
            print(json.dumps(asdict(v), ensure_ascii=False))
        else:
            print(f"{v.where:<28} {v.event_id or '-':<36} {'ACCEPTED' if v.accepted else 'REFUSED ':<8} "
                  f"{v.check}: {v.reason}")
    refused = sum(not v.accepted for v in verdicts)
    if not args.json:
        print(f"{len(verdicts)} records, {refused} would be refused", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
