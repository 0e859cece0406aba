"""Webhook secrets at rest are sealed and bound to their subscription."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from notify.sealing import SecretBox


def test_a_sealed_secret_opens_only_with_its_key_and_its_subscription():
    box = SecretBox("k1")
    sealed = box.seal("whsec-123", "sub-a")
    assert "whsec-123" not in sealed and sealed.startswith("v1:")
    assert box.open(sealed, "sub-a") == "whsec-123"
    for other_key, other_sub in ((SecretBox("k2"), "sub-a"), (box, "sub-b")):
        with pytest.raises(InvalidTag):
            other_key.open(sealed, other_sub)
    assert box.open("legacy-plain", "sub-a") == "legacy-plain"  # stored before sealing existed
