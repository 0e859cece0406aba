"""The personal-data vault: the one place a citizen's data can be read from.

Events, outboxes, DLQs and ledgers hold the applicant only sealed (`SealedApplicant`) under a data key of their own
(AES-256-GCM). The data keys live here, each wrapped under the key-encryption key from configuration
(`PERSONAL_DATA_KEK`; a KMS in production), in collection `personal_data_keys`. Erasing a citizen deletes their key:
every copy of their data in the log, its replays, the DLQs and any backup becomes noise (crypto-shredding), while
the log itself stays immutable and the figures unchanged.

Every opening is written to `personal_data_access` (who, which dossier, why, when) before the data is handed out;
the service never updates or deletes that log (in MongoDB, grant its writers `insert` only).

Citizens are named by a pseudonym, `subject_of(cid)`: a keyed hash of the CCCD (`PERSONAL_DATA_SUBJECT_KEY`) that
finds their key, their opt-outs and their erasure without storing the number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo.asynchronous.database import AsyncDatabase

from lienthong.contracts.dossier import Applicant, SealedApplicant
from lienthong.contracts.intake import SealedForIntake

DEV_KEK = "lienthong-dev-personal-data-kek"
DEV_SUBMISSION_KEY = "lienthong-dev-submission-key"
DEV_SUBJECT_KEY = "lienthong-dev-subject-key"
NONCE = 12


class PersonalDataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERSONAL_DATA_", extra="ignore")

    kek: SecretStr = Field(SecretStr(DEV_KEK), description="Key-encryption key of the citizens' data keys; losing it "
                           "loses every citizen's data, so it lives in a KMS or a sealed secret, backed up apart")
    subject_key: SecretStr = Field(SecretStr(DEV_SUBJECT_KEY), description="Key of the citizen pseudonyms (shared by "
                                   "intake and notify; changing it orphans opt-outs and erasure records)")
    submission_key: SecretStr = Field(SecretStr(DEV_SUBMISSION_KEY), description="Intake's X25519 private key (any "
                                      "secret string; hashed to 32 bytes): agency systems seal applicants to its "
                                      "public half before filing over Kafka")

    def development(self, *, submissions: bool = False) -> dict[str, bool]:
        """For `refuse_development_secrets`: which of these still hold their development default (the
        submission key only for intake, its one user)."""
        weak = {"PERSONAL_DATA_KEK": self.kek.get_secret_value() == DEV_KEK,
                "PERSONAL_DATA_SUBJECT_KEY": self.subject_key.get_secret_value() == DEV_SUBJECT_KEY}
        if submissions:
            weak["PERSONAL_DATA_SUBMISSION_KEY"] = self.submission_key.get_secret_value() == DEV_SUBMISSION_KEY
        return weak

    def submission_private_key(self) -> X25519PrivateKey:
        seed = hashlib.sha256(self.submission_key.get_secret_value().encode()).digest()
        return X25519PrivateKey.from_private_bytes(seed)

    def subject_of(self, citizen_id: str) -> str:
        mac = hmac.new(self.subject_key.get_secret_value().encode(), citizen_id.encode(), hashlib.sha256)
        return "p-" + mac.hexdigest()[:32]


class PersonalDataError(Exception):
    """A sealed value that does not open under its key: altered, sealed for someone else, or under an erased key."""


def _aead(key: bytes | str) -> AESGCM:
    return AESGCM(key if isinstance(key, bytes) else hashlib.sha256(key.encode()).digest())


def _seal(aead: AESGCM, plain: bytes, bound_to: str) -> str:
    nonce = os.urandom(NONCE)
    return base64.b64encode(nonce + aead.encrypt(nonce, plain, bound_to.encode())).decode()


def _open(aead: AESGCM, sealed: str, bound_to: str) -> bytes:
    raw = base64.b64decode(sealed)
    try:
        return aead.decrypt(raw[:NONCE], raw[NONCE:], bound_to.encode())
    except InvalidTag as exc:
        raise PersonalDataError("sealed value does not open under its key") from exc


# Sealing to intake (agency systems filing over Kafka, where the broker would keep what they send): an ephemeral
# X25519 key agreed with intake's, HKDF-SHA256, AES-256-GCM bound to the submission's external reference.
SUBMISSION_ALG = "X25519-HKDF-SHA256-A256GCM"
_INFO = b"lienthong submission applicant v1"


def _submission_aead(shared: bytes, epk: bytes, recipient: bytes) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=epk + recipient, info=_INFO).derive(shared))


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal_for_intake(intake_public_key: str, applicant: Applicant, external_ref: str) -> SealedForIntake:
    """What an agency system puts in a submission it files over Kafka instead of the applicant in clear."""
    recipient = base64.b64decode(intake_public_key)
    ephemeral = X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    aead = _submission_aead(ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient)), epk, recipient)
    nonce = os.urandom(NONCE)
    sealed = nonce + aead.encrypt(nonce, applicant.model_dump_json().encode(), external_ref.encode())
    return SealedForIntake(alg=SUBMISSION_ALG, epk=base64.b64encode(epk).decode(),
                           sealed=base64.b64encode(sealed).decode())


class SubmissionKey:
    """Intake's key pair for applicants sealed by agency systems."""

    def __init__(self, settings: PersonalDataSettings | None = None) -> None:
        self._private = (settings or PersonalDataSettings()).submission_private_key()
        self.public = base64.b64encode(_raw(self._private.public_key())).decode()

    def open(self, sealed: SealedForIntake, external_ref: str) -> Applicant:
        """Raises PersonalDataError if it was not sealed to this key for this reference (or was altered)."""
        try:
            epk = base64.b64decode(sealed.epk)
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(epk))
            raw = base64.b64decode(sealed.sealed)
            aead = _submission_aead(shared, epk, base64.b64decode(self.public))
            plain = aead.decrypt(raw[:NONCE], raw[NONCE:], external_ref.encode())
        except (InvalidTag, ValueError) as exc:
            raise PersonalDataError("sealed applicant does not open with intake's key") from exc
        return Applicant.model_validate_json(plain)


@dataclass(frozen=True)
class Access:
    """Who reads whose data, and why: one line of the access log."""

    reader: str  # the client (token subject or service principal)
    dossier: str
    purpose: str


class Vault:
    def __init__(self, db: AsyncDatabase, settings: PersonalDataSettings | None = None) -> None:
        self.settings = settings or PersonalDataSettings()
        self._kek = _aead(self.settings.kek.get_secret_value())
        self.keys = db["personal_data_keys"]
        self.erasures = db["personal_data_erasures"]
        self.access_log = db["personal_data_access"]

    def subject_of(self, citizen_id: str) -> str:
        return self.settings.subject_of(citizen_id)

    # -- data keys --------------------------------------------------------------------------------------------

    async def _key(self, subject: str) -> AESGCM | None:
        doc = await self.keys.find_one({"_id": subject})
        return None if doc is None else AESGCM(_open(self._kek, doc["wrapped"], subject))

    async def _stored_keys(self, subjects: list[str]) -> dict[str, AESGCM]:
        docs = await self.keys.find({"_id": {"$in": subjects}}).to_list(None)
        return {doc["_id"]: AESGCM(_open(self._kek, doc["wrapped"], doc["_id"])) for doc in docs}

    async def _keys_or_new(self, subjects: list[str]) -> dict[str, AESGCM]:
        keys = await self._stored_keys(subjects)
        missing = [s for s in subjects if s not in keys]
        if not missing:
            return keys
        fresh = {s: AESGCM.generate_key(bit_length=256) for s in missing}
        try:
            await self.keys.insert_many([{"_id": s, "wrapped": _seal(self._kek, k, s), "created_at": datetime.now(UTC)}
                                         for s, k in fresh.items()], ordered=False)
            return keys | {s: AESGCM(k) for s, k in fresh.items()}
        except Exception:
            # Whatever the store answered (a duplicate key on MongoDB, something else elsewhere): another writer
            # may have created some first, and then theirs are the keys. What is stored decides, not the reply.
            keys |= await self._stored_keys(missing)
            if absent := [s for s in missing if s not in keys]:
                raise PersonalDataError(f"{len(absent)} data keys could not be stored") from None
            return keys

    # -- sealing and opening ----------------------------------------------------------------------------------

    async def seal(self, applicant: Applicant) -> SealedApplicant:
        return (await self.seal_many([applicant]))[0]

    async def seal_many(self, applicants: list[Applicant]) -> list[SealedApplicant]:
        """Each applicant sealed under their own data key; the keys of many citizens are read in one round trip and
        the new ones created in another."""
        subjects = [self.subject_of(a.citizen_id) for a in applicants]
        keys = await self._keys_or_new(list(dict.fromkeys(subjects)))
        return [SealedApplicant(subject=subject, residence_unit=a.residence_unit,
                                sealed=_seal(keys[subject], a.model_dump_json().encode(), subject))
                for a, subject in zip(applicants, subjects, strict=True)]

    async def open(self, sealed: SealedApplicant, access: Access) -> Applicant | None:
        """The applicant, or None if they were erased. The access is logged before anything is returned."""
        plain = await self.open_for(sealed.subject, sealed.sealed)
        if plain is None:
            return None
        await self._log(access, sealed.subject)
        return Applicant.model_validate_json(plain)

    async def seal_for(self, subject: str, plain: bytes) -> str | None:
        """Any other copy of a citizen's data (a rendered message awaiting a retry) under the same key; None if
        they were erased."""
        key = await self._key(subject)
        return None if key is None else _seal(key, plain, subject)

    async def open_for(self, subject: str, sealed: str) -> bytes | None:
        """None if the citizen was erased (a key made after the erasure, for a later filing, opens nothing of
        before: that is erased data too)."""
        key = await self._key(subject)
        if key is None:
            return None
        try:
            return _open(key, sealed, subject)
        except PersonalDataError:
            return None

    async def _log(self, access: Access, subject: str) -> None:
        await self.access_log.insert_one({"at": datetime.now(UTC), "reader": access.reader, "dossier": access.dossier,
                                          "subject": subject, "purpose": access.purpose})

    async def accesses(self, *, dossier: str | None = None, reader: str | None = None,
                       limit: int = 200) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("dossier", dossier), ("reader", reader)) if v}
        docs = await self.access_log.find(query, {"_id": 0}).sort("at", -1).limit(limit).to_list(limit)
        return docs

    # -- erasure ------------------------------------------------------------------------------------------------

    async def erase(self, citizen_id: str, by: str) -> bool:
        """Forget the citizen: their data key goes, an erasure record (pseudonym, who, when) stays as proof.
        True if there was a key to delete. Idempotent."""
        subject = self.subject_of(citizen_id)
        now = datetime.now(UTC)
        await self.erasures.update_one({"_id": subject}, {"$setOnInsert": {"erased_at": now, "by": by}}, upsert=True)
        deleted = await self.keys.delete_one({"_id": subject})
        return deleted.deleted_count > 0

    async def erased(self, citizen_id: str) -> bool:
        return await self.erasures.find_one({"_id": self.subject_of(citizen_id)}) is not None
