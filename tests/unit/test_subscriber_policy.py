"""Every service's subscribers take the delivery policy `lienthong.messaging` decides once for all of them: offsets
committed only by the service once the effect is stored (never FastStream's at-most-once default on Kafka, never
aiokafka's auto-commit)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from faststream import AckPolicy

SERVICES = ["intake", "routing", "notify", "stats"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_subscriber_commits_only_after_its_effect(service):
    subscribers = importlib.import_module(f"{service}.main").bootstrap().broker.subscribers
    assert subscribers, f"{service} subscribes to nothing?"
    for subscriber in subscribers:
        # MANUAL: stats' window commits exactly the offsets it stored; the others commit after their handler.
        assert subscriber.ack_policy in (AckPolicy.NACK_ON_ERROR, AckPolicy.MANUAL), subscriber
        assert subscriber._connection_args["enable_auto_commit"] is False, subscriber


@pytest.mark.parametrize("service", SERVICES)
def test_no_handler_takes_a_parameter_resolved_in_a_worker_thread(service):
    """FastStream resolves `KafkaMessage` / `KafkaBroker` (context) parameters by a synchronous lookup that
    fast_depends runs in a worker thread at every call; handlers read the message with `current_message` instead."""
    for subscriber in importlib.import_module(f"{service}.main").bootstrap().broker.subscribers:
        for call in subscriber.calls:
            handler = call.handler._original_call
            params = inspect.signature(handler).parameters
            assert list(params) == [next(iter(params))], f"{handler.__qualname__} takes {list(params)}"
