"""Webhook secrets at rest: sealed with AES-GCM under `NOTIFY_SECRETS_KEY`, bound to their subscription id, so a
copy of the store (a backup, a dump) does not let anyone sign webhooks as Liên Thông."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1:"
DEV_KEY = "lienthong-dev-secrets-key"


class SecretBox:
    def __init__(self, key: str) -> None:
        self._aead = AESGCM(hashlib.sha256(key.encode()).digest())

    def seal(self, plain: str, bound_to: str) -> str:
        nonce = os.urandom(12)
        return PREFIX + base64.b64encode(nonce + self._aead.encrypt(nonce, plain.encode(), bound_to.encode())).decode()

    def open(self, sealed: str, bound_to: str) -> str:
        """The secret; raises if it was altered or belongs to another subscription. A secret stored before sealing
        existed (no prefix) is returned as it is."""
        if not sealed.startswith(PREFIX):
            return sealed
        raw = base64.b64decode(sealed[len(PREFIX):])
        return self._aead.decrypt(raw[:12], raw[12:], bound_to.encode()).decode()
