"""Applicants as events carry them, for tests: sealed by a real vault, or an unopenable stand-in where a test never
opens them (routing and stats read only the pseudonym and the unit of residence)."""

from __future__ import annotations

import base64
import hashlib

from lienthong.contracts.dossier import Applicant, SealedApplicant
from lienthong.personaldata import PersonalDataSettings


def stand_in(applicant: Applicant) -> SealedApplicant:
    """Right shape, right pseudonym, no key anywhere: opens to nothing."""
    return SealedApplicant(subject=PersonalDataSettings().subject_of(applicant.citizen_id),
                           residence_unit=applicant.residence_unit,
                           sealed=base64.b64encode(hashlib.sha256(applicant.citizen_id.encode()).digest()).decode())
