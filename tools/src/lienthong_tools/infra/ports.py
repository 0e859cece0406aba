"""Free ports for local servers and test processes, chosen below the kernel's ephemeral range: a port the kernel
hands out for `bind(0)` may be taken by any outgoing connection before the server binds it (seen: a fresh-clone
run's `lienthong run` could not bind its outbox), a port below that range only by another server."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20_000  # below: well-known ports and the local environments' fixed ones (9092, 27017, 39092, ...)


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive ports on 127.0.0.1 that nothing listens on now (Kafka's controller
    listens on port + 1)."""
    highest = ephemeral_range()[0] - count
    for _ in range(500):
        first = random.randrange(LOWEST, highest)
        holds = []
        try:
            for port in range(first, first + count):
                holder = socket.socket()
                holds.append(holder)
                holder.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for holder in holds:
                holder.close()
    raise OSError(f"no {count} consecutive free ports on 127.0.0.1 between {LOWEST} and {highest}")


def free_port() -> int:
    return free_ports(1)
