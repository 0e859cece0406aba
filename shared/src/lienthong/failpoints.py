"""Failpoints for fault-injection tests: with `LIENTHONG_FAILPOINTS="stats.after_rows=0.2,..."` in its environment,
a process SIGKILLs itself at `failpoint("stats.after_rows")` with that probability — a crash at exactly the worst
moment, which a kill from outside hits only by luck. Unset (always, outside such tests) it is one dict lookup."""

from __future__ import annotations

import os
import random
import signal

_POINTS = {name.strip(): float(p) for name, _, p in
           (item.partition("=") for item in os.environ.get("LIENTHONG_FAILPOINTS", "").split(",") if item)}


def failpoint(name: str) -> None:
    probability = _POINTS.get(name)
    if probability and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)
