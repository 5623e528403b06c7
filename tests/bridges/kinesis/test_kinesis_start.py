"""A Kinesis group's start checkpoint (``bridges/kinesis/_checkpoints.py``): what the
facade saves before a group read anything, and what a reader makes of it."""

from __future__ import annotations

from bridges.kinesis import MemoryCheckpointStore
from bridges.kinesis._checkpoints import SHARD_END, start_checkpoint, start_of


def test_a_start_checkpoint_reads_back_as_the_position_it_names() -> None:
    assert start_of(start_checkpoint(True, 1700000000.25)) == ("TRIM_HORIZON", None)
    assert start_of(start_checkpoint(False, 1700000000.25)) == ("LATEST", 1700000000.25)


def test_sequence_numbers_shard_end_and_none_are_not_starts() -> None:
    for checkpoint in ("49590338271490256608559692538361571095921575989136588898",
                       SHARD_END, None):
        assert start_of(checkpoint) is None


def test_a_start_is_kept_like_any_checkpoint_until_a_sequence_number_replaces_it() -> None:
    store = MemoryCheckpointStore()
    store.save("g", {("s", "shard-0"): start_checkpoint(False, 5.0)})
    assert start_of(store.load("g", "s")["shard-0"]) == ("LATEST", 5.0)
    store.save("g", {("s", "shard-0"): "123"})
    assert start_of(store.load("g", "s")["shard-0"]) is None
