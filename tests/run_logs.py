"""What a failed `lienthong run` printed that matters, for a test's failure message."""

from __future__ import annotations

from pathlib import Path


def why(log: Path) -> str:
    """Exits and tracebacks first, then the tail."""
    text = log.read_text()
    # uvicorn's bind failure says "error" in lower case
    lines = [line for line in text.splitlines() if any(word in line.lower() for word in ("exited", "error", "traceback"))]
    return "\n".join(lines[:40]) + "\n...\n" + text[-2000:]
