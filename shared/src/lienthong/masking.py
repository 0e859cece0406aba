"""Masks for personal data shown where it must be recognisable but not readable (public pages, SMS)."""

from __future__ import annotations


def mask_name(full_name: str) -> str:
    """'Ngô Thị Trang' -> 'N** T** T****': enough for a citizen to recognise their dossier, no more."""
    return " ".join(part[0] + "*" * (len(part) - 1) for part in full_name.split())


def mask_citizen_id(citizen_id: str) -> str:
    """'001203004567' -> '*********567'."""
    return "*" * (len(citizen_id) - 3) + citizen_id[-3:]
