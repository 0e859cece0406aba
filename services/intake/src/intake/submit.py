"""The one way a dossier gets in, whichever edge it came through (HTTP or Kafka).

Validate -> deduplicate on the external reference -> store under a new code -> publish `dossier.submitted` and
wait for Kafka's acknowledgement. If Kafka does not acknowledge in time the caller is told (HTTP 503), and the
stored dossier stays in the outbox: the relay publishes it once Kafka is back, and a resubmission with the same
external reference gets the same code. Nothing is half-done: no code without its event, no event twice from one
process (a duplicate from two processes carries the same event id, which consumers deduplicate on).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import structlog

from intake.domain import Rejected, RuleError, check, submitted_event
from intake.group import Coalescer
from intake.store import DossierStore, NewDossier, StoredDossier
from lienthong.catalogue import Catalogue
from lienthong.catalogue.versions import LiveCatalogue
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import SealedApplicant
from lienthong.contracts.intake import DossierSubmission
from lienthong.personaldata import PersonalDataError, SubmissionKey, Vault

# Appends the event to the producer and returns the future of its acknowledgement.
Send = Callable[[CloudEvent], Awaitable["asyncio.Future[object]"]]

log = structlog.get_logger("intake")


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time; the dossier is stored and will be published by the relay."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Conflict(Exception):
    """The same reference was already used by this client for a different submission."""


def idempotency_key(client: str, receiving_unit: str, external_ref: str) -> str:
    """A reference belongs to the client that sent it (nobody can take a portal's dossier number first), and is
    unique per receiving unit (counter receipt numbers are per centre)."""
    return f"{client}:{receiving_unit}/{external_ref}"


def fingerprint(submission: DossierSubmission, key: bytes) -> str:
    """Keyed: a plain hash of a submission holding a CCCD could be confirmed by guessing."""
    return hmac.new(key, submission.model_dump_json().encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Filing:
    key: str  # idempotency key
    submission: DossierSubmission  # its applicant in clear, in memory only
    digest: str
    catalogue: tuple[int, Catalogue]  # the version it was checked against, which it is filed under


def _submitted(submission: DossierSubmission, catalogue: tuple[int, Catalogue], received_at: datetime,
               applicant: SealedApplicant, code: str) -> CloudEvent:
    version, cat = catalogue
    return submitted_event(submission, cat, code=code, received_at=received_at, applicant=applicant,
                           catalogue_version=version)


class Intake:
    def __init__(
        self,
        repo: DossierStore,
        send: Send,
        catalogue: Catalogue | LiveCatalogue,
        vault: Vault,
        submission_key: SubmissionKey,
        *,
        publish_timeout_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_group: int = 256,
    ) -> None:
        self.repo = repo
        self.send = send
        self.live = catalogue if isinstance(catalogue, LiveCatalogue) else LiveCatalogue(base=catalogue)
        self.vault = vault
        self.submission_key = submission_key
        self.publish_timeout_s = publish_timeout_s
        self.clock = clock
        self._pending: dict[str, asyncio.Task[None]] = {}  # idempotency key -> acknowledgement still awaited
        self._unpublished: dict[str, float] = {}  # idempotency key -> when its publication last failed
        self._file = Coalescer(self._file_together, max_batch=max_group)
        self._mark_published = Coalescer(self._mark_published_together, max_batch=max_group)

    async def submit(self, submission: DossierSubmission, client: str) -> tuple[StoredDossier, bool]:
        """(dossier, created) for `client`'s submission. Raises Rejected (rule errors), Conflict (the reference
        already names another submission of this client) or KafkaUnavailable."""
        submission = self.opened(submission)
        pinned = self.live.pinned()
        errors = check(submission, pinned[1])
        if errors:
            raise Rejected(errors)
        key = idempotency_key(client, submission.receiving_unit, submission.external_ref)
        digest = fingerprint(submission, self.vault.settings.subject_key.get_secret_value().encode())
        async with self.repo.lock(key):  # concurrent duplicates in this process wait for the first
            stored, created = await self._file(Filing(key, submission, digest, pinned))
            if not created and stored.fingerprint not in (None, digest):
                raise Conflict()
            with structlog.contextvars.bound_contextvars(dossier_code=stored.code, event_id=stored.event.id):
                if not stored.published:
                    await self.publish(stored)
                log.info("dossier_received" if created else "dossier_resubmitted", procedure=submission.procedure_code)
        return stored, created

    async def _file_together(self, filings: list[Filing]) -> list[tuple[StoredDossier, bool]]:
        """One group commit: the references looked up together, the applicants sealed together (the only form they
        are stored or sent in), the new dossiers stored together. The data keys are read (and new ones stored)
        while the references are looked up and the new ones entered in the outbox: three round trips in sequence
        rather than five, for sealing a resubmission's applicant too (rare, and nothing of it is kept)."""
        (existing, new), applicants = await asyncio.gather(
            self._enter_new(filings), self.vault.seal_many([f.submission.applicant for f in filings]))
        if not new:
            return [(existing[f.key], False) for f in filings]
        received_at = self.clock()
        created = await self.repo.create_many([
            NewDossier(f.key, f.submission.receiving_unit, received_at,
                       partial(_submitted, f.submission, f.catalogue, received_at, applicant), f.digest)
            for f, applicant in zip(filings, applicants, strict=True) if f.key not in existing], entered=True)
        by_key = {f.key: result for f, result in zip(new, created, strict=True)}
        return [(existing[f.key], False) if f.key in existing else by_key[f.key] for f in filings]

    async def _enter_new(self, filings: list[Filing]) -> tuple[dict[str, StoredDossier], list[Filing]]:
        """The dossiers already stored under these references, and the filings that are new, in the outbox."""
        existing = await self.repo.find_many([f.key for f in filings])
        new = [f for f in filings if f.key not in existing]
        if new:
            await self.repo.enter_outbox([f.key for f in new])
        return existing, new

    @property
    def catalogue(self) -> Catalogue:
        """The catalogue in use now."""
        return self.live.current

    def opened(self, submission: DossierSubmission) -> DossierSubmission:
        """The submission with its applicant in clear (in memory only: it is sealed again for the citizen before
        anything is stored)."""
        if submission.applicant_sealed is None:
            return submission
        try:
            applicant = self.submission_key.open(submission.applicant_sealed, submission.external_ref)
        except PersonalDataError:
            raise Rejected([RuleError("applicant_sealed", "unopenable", "not sealed to intake's submission key "
                                      "for this external_ref (GET /v1/submission-key)")]) from None
        return submission.model_copy(update={"applicant": applicant, "applicant_sealed": None})

    async def publish(self, stored: StoredDossier) -> None:
        """Return once Kafka acknowledged the event; recording that in the store follows in the background."""
        if (pending := self._pending.get(stored.key)) is not None:  # already on its way: never send twice
            await self._await_ack(stored, asyncio.shield(pending))
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout_s
        try:
            ack = await asyncio.wait_for(self.send(stored.event), self.publish_timeout_s)
        except Exception as exc:  # not even appended to the producer: the relay will send it
            log.warning("publish_failed", dossier_code=stored.code, error=type(exc).__name__)
            self._unpublished[stored.key] = time.monotonic()
            raise KafkaUnavailable(stored.code) from exc
        # Appended: aiokafka may still deliver it after we stop waiting, so record the outcome whenever it comes.
        task = asyncio.ensure_future(self._mark_when_acknowledged(stored, ack))
        self._pending[stored.key] = task
        task.add_done_callback(lambda done: self._forget(stored.key, done))
        await self._await_ack(stored, asyncio.shield(ack), max(0.1, deadline - loop.time()))

    async def _await_ack(self, stored: StoredDossier, ack: Awaitable[object], timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(ack, timeout or self.publish_timeout_s)
        except Exception as exc:
            log.warning("publish_unacknowledged", dossier_code=stored.code, error=type(exc).__name__)
            raise KafkaUnavailable(stored.code) from exc

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here; already logged in _mark_when_acknowledged

    async def _mark_when_acknowledged(self, stored: StoredDossier, ack: asyncio.Future[object]) -> None:
        try:
            await ack
        except Exception as exc:  # the producer gave up on it: the relay will publish it again
            log.warning("publish_expired", dossier_code=stored.code, error=type(exc).__name__)
            self._unpublished[stored.key] = time.monotonic()
            raise KafkaUnavailable(stored.code) from exc
        self._unpublished.pop(stored.key, None)
        try:
            await self._mark_published(stored.key)
        except Exception as exc:  # at worst the relay of a later process re-sends the same event id
            log.warning("mark_published_failed", dossier_code=stored.code, error=type(exc).__name__)

    async def _mark_published_together(self, keys: list[str]) -> list[None]:
        await self.repo.mark_published_many(keys)
        return [None] * len(keys)

    async def recover(self) -> None:
        """At start-up: take over what a previous process stored but never saw acknowledged."""
        for stored in await self.repo.unpublished():
            self._unpublished.setdefault(stored.key, 0.0)

    async def relay_once(self, grace_s: float) -> int:
        """Publish dossiers whose event was not acknowledged, once `grace_s` has passed. Returns how many."""
        sent = 0
        now = time.monotonic()
        for key in [k for k, failed_at in self._unpublished.items() if now - failed_at >= grace_s]:
            if key in self._pending:  # the producer may still deliver it: never send twice from here
                continue
            async with self.repo.lock(key):
                current = await self.repo.find_by_key(key)
                if current is None or current.published:
                    self._unpublished.pop(key, None)
                    continue
                try:
                    await self.publish(current)
                except KafkaUnavailable:
                    return sent  # still down: try again next round
                sent += 1
        if sent:
            log.info("outbox_relayed", count=sent)
        return sent

    async def drain(self) -> None:
        """Wait for acknowledgements still in flight and their marks (graceful shutdown)."""
        if self._pending:
            await asyncio.wait(list(self._pending.values()), timeout=self.publish_timeout_s)
        await self._mark_published.drain()
