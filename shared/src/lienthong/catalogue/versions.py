"""The procedure catalogue as versioned data the province maintains (`lienthong catalogue import FILE`).

Each import is one document in `catalogue_versions` (`_id` = version 1, 2, ...; its procedures packed), so a version
is stored whole or not at all. Version 0 is the catalogue built into this release. A dossier is filed under the
newest version intake knows and keeps it (`catalogue_version` on `dossier.submitted`): routing resolves its chain
with that version, whatever was imported since. Services look for a newer version every few seconds
(`LiveCatalogue.refresh`), so an import needs no restart.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pymongo.asynchronous.database import AsyncDatabase

from lienthong.catalogue import Catalogue, Procedure, catalogue

log = structlog.get_logger("lienthong.catalogue")
COLLECTION = "catalogue_versions"
BUILT_IN = 0


def fingerprint(procedures: dict[str, Procedure]) -> str:
    """Same procedures, same fingerprint (whatever the file's order or format): a re-import adds no version."""
    body = orjson.dumps([procedures[c].model_dump(mode="json") for c in sorted(procedures)])
    return hashlib.sha256(body).hexdigest()


class CatalogueVersions:
    def __init__(self, db: AsyncDatabase) -> None:
        self.collection = db[COLLECTION]

    async def latest(self) -> dict[str, Any] | None:
        """The newest version's number and description (not its procedures)."""
        return await self.collection.find_one({}, {"procedures": 0}, sort=[("_id", -1)])

    async def history(self) -> list[dict[str, Any]]:
        return await self.collection.find({}, {"procedures": 0}, sort=[("_id", -1)]).to_list(None)

    async def load(self, version: int, base: Catalogue | None = None) -> Catalogue:
        """That version's catalogue (the province's units with its procedures); KeyError if it was never stored."""
        base = base or catalogue()
        if version == BUILT_IN:
            return base
        doc = await self.collection.find_one({"_id": version})
        if doc is None:
            raise KeyError(f"catalogue version {version} is not stored")
        items = orjson.loads(zlib.decompress(doc["procedures"]))
        return Catalogue(units=base.units, procedures={p["code"]: Procedure.model_validate(p) for p in items})

    async def publish(self, procedures: dict[str, Procedure], source: str) -> tuple[int, bool]:
        """Store the procedures as the next version; (version, True), or (the newest version, False) when it holds
        the same procedures already. Two imports at once each get a version of their own."""
        digest = fingerprint(procedures)
        packed = zlib.compress(orjson.dumps([p.model_dump(mode="json") for p in procedures.values()]), 6)
        for _ in range(20):
            latest = await self.latest()
            if latest is not None and latest["sha256"] == digest:
                return latest["_id"], False
            version, nonce = (latest["_id"] if latest else BUILT_IN) + 1, uuid.uuid4().hex
            try:
                await self.collection.insert_one({
                    "_id": version, "sha256": digest, "nonce": nonce, "source": source, "procedures": packed,
                    "count": len(procedures), "imported_at": datetime.now(UTC)})
                return version, True
            except Exception:  # noqa: BLE001 - whatever the reply, what is stored under `version` decides
                stored = await self.collection.find_one({"_id": version}, {"nonce": 1})
                if stored is not None and stored.get("nonce") == nonce:
                    return version, True
        raise RuntimeError("could not store a catalogue version: another import keeps taking the next number")


class LiveCatalogue:
    """The catalogue a service files and routes with: the newest version (`current`), refreshed by `refresh()`
    (a `Periodic`), and any older version a dossier names (`at`). Without a store it is the built-in one."""

    def __init__(self, versions: CatalogueVersions | None = None, base: Catalogue | None = None) -> None:
        self.versions = versions
        self.base = base or catalogue()
        self.version = BUILT_IN
        self.current = self.base
        self._known: dict[int, Catalogue] = {BUILT_IN: self.base}

    def pinned(self) -> tuple[int, Catalogue]:
        """The version in use and its catalogue, together (a refresh may come between two reads otherwise)."""
        return self.version, self.current

    async def refresh(self) -> None:
        if self.versions is None:
            return
        latest = await self.versions.latest()
        if latest is None or latest["_id"] == self.version:
            return
        self.current = await self.at(latest["_id"])
        self.version = latest["_id"]
        log.info("catalogue_version_in_use", version=self.version, procedures=len(self.current.procedures))

    def procedure(self, code: str) -> Procedure | None:
        """A procedure as the newest version has it, or as built in (one since removed keeps its name)."""
        return self.current.procedures.get(code) or self.base.procedures.get(code)

    async def at(self, version: int) -> Catalogue:
        known = self._known.get(version)
        if known is None:
            if self.versions is None:
                raise KeyError(f"catalogue version {version} is not stored")
            known = self._known[version] = await self.versions.load(version, self.base)
        return known
