"""Pins the public names of ``bus`` and checks that importing stays light."""

from __future__ import annotations

import subprocess
import sys

import bus

CORE_NAMES = {
    "Actor", "ActorStats", "Attachment", "BackendError", "BackendUnavailableError",
    "Bus", "BusClosedError", "BusError", "BusStats", "Codec", "ConfigurationError",
    "DecodeError", "DedupWindow", "Envelope", "Group", "LogReader", "MailboxFullError",
    "Middleware",
    "MissingDependencyError", "NotDeliveredError", "Overflow", "PayloadTypeError",
    "RequestFailedError", "RequestTimeoutError",
    "Retention", "RetryPolicy", "Subscription", "Supervision", "SupervisorGaveUp", "Topic",
    "TopicError", "TopicStats", "UnknownTopicError", "open_bus",
}


def test_core_names_are_exported() -> None:
    assert CORE_NAMES <= set(bus.__all__)
    for name in bus.__all__:
        assert getattr(bus, name) is not None


def test_every_error_is_a_bus_error() -> None:
    errors = [getattr(bus, n) for n in CORE_NAMES if n.endswith(("Error", "GaveUp"))]
    assert all(issubclass(e, bus.BusError) for e in errors)


def test_importing_bus_and_bridges_loads_no_broker_sdk() -> None:
    code = (
        "import sys, bus, bridges, bus.testing\n"
        "heavy = {'aiokafka', 'aio_pika', 'aioboto3', 'google.cloud.pubsub', 'redis',"
        " 'trio_asyncio', 'pydantic'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


IMPLEMENTER_NAMES = {
    "Bridge", "ClosesOnExit", "Delivery", "ExportResults", "Failure", "Features",
    "OffsetTracker", "Port", "Rejected", "H_ORIGIN", "H_ERROR", "H_ERROR_TYPE", "H_ORIGINAL_TOPIC",
    "H_DEAD_LETTER_ORIGIN",
    # the registry, and what broker modules took from the core's privates before
    "BrokerPlugin", "brokers", "ENTRY_POINT_GROUP", "EXPORT_RETRY", "Pattern", "RawCodec",
    "codec_for", "describe", "file_secrets", "get_logger", "is_pattern", "mask_setting",
    "mask_url", "redact", "validate_pattern", "validate_topic",
}


def test_implementer_names_live_in_bus_abc_not_in_bus() -> None:
    import bus.abc

    assert IMPLEMENTER_NAMES <= set(bus.abc.__all__)
    assert not {"Bridge", "Port", "Features", "Rejected"} & set(bus.__all__)


def test_rejected_is_a_backend_error_defined_with_the_others() -> None:
    """Rejected lives in the error tree (bus/_errors.py), not in the bridge contract
    module, so the workers need not import the contract to recognise it."""
    import bus._errors
    import bus.abc

    assert bus.abc.Rejected is bus._errors.Rejected
    assert issubclass(bus.abc.Rejected, bus.BackendError)
    assert "Rejected" in (bus._errors.__doc__ or "")
