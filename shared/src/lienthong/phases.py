"""Where a batch's time goes: one histogram per service, a sample per phase of each batch."""

from __future__ import annotations

import time

from prometheus_client import Histogram

BUCKETS = (0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def phase_histogram(service: str) -> Histogram:
    return Histogram(f"lienthong_{service}_batch_phase_seconds", "Seconds a batch spends per phase", ["phase"],
                     buckets=BUCKETS)


class PhaseClock:
    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.histogram.labels(phase).observe(now - self.last)
        self.last = now
