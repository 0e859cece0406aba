"""The back office's rule, pure: what the land registry answers to an assignment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Complete:
    result_ref: str


@dataclass(frozen=True)
class AskForPapers:
    missing: tuple[str, ...]


def decide(dossier_code: str, papers_on_file: set[str], required: tuple[str, ...]) -> Complete | AskForPapers:
    """Complete the step when every required paper is on file; otherwise ask the citizen for what is missing."""
    missing = tuple(p for p in required if p not in papers_on_file)
    return AskForPapers(missing) if missing else Complete(result_ref=f"GCN-{dossier_code}")
