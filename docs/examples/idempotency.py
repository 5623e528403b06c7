"""Idempotency keys: a consumer that handles each logical event once despite redelivery.

Seed pattern "Idempotencia". Producers put an idempotency key in the message key and
an ``idempotency-key`` header (the seed only used the key; brokers may rewrite keys for
partitioning, headers travel untouched). At-least-once delivery and retried producers
both produce duplicates; the consumer remembers the keys it processed and skips
repeats. Here the store is a set; in production it is a table written in the same
transaction as the effect.
"""

from __future__ import annotations

import msgspec
import trio

from bus.events import BaseEvent


class Transfer(msgspec.Struct):
    id: str
    account: str
    amount: int


class LedgerConsumer:
    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self.seen_keys: set[str] = set()
        self.duplicates = 0

    def apply(self, transfer: Transfer, idempotency_key: str) -> None:
        if idempotency_key in self.seen_keys:
            self.duplicates += 1
            return
        self.balances[transfer.account] = self.balances.get(transfer.account, 0) + transfer.amount
        self.seen_keys.add(idempotency_key)


async def push_transfer(events: BaseEvent[Transfer], transfer: Transfer) -> None:
    # The key is derived from the business operation, not the clock: a retry of the
    # same operation gets the same key (the seed's f"{id}:{time}" would not).
    idempotency_key = f"transfer:{transfer.id}"
    await events.push(
        "requested", transfer, key=idempotency_key, headers={"idempotency-key": idempotency_key}
    )


async def main(event_type: str = "memory", prefix: str = "") -> tuple[dict[str, int], int]:
    events = BaseEvent(model=Transfer, event_type=event_type, topic_prefix=f"{prefix}ledger")
    ledger = LedgerConsumer()
    # The ledger reads in its own consumer group; a first read makes the group exist (a
    # queue or subscription on a broker), so it gets everything pushed from now on.
    async for transfer in events.pull("requested", group="ledger"):
        raise AssertionError("nothing was pushed yet")
    for transfer in (Transfer("t1", "acc-1", 100), Transfer("t2", "acc-1", -30)):
        await push_transfer(events, transfer)
    await push_transfer(events, Transfer("t1", "acc-1", 100))  # a producer retry

    stream = events.pull("requested", group="ledger")
    async for transfer in stream:
        assert stream.message is not None
        ledger.apply(transfer, stream.message.headers["idempotency-key"])
    # An at-least-once producer that crashed before recording what it sent sends it all
    # again: reading the copies changes nothing.
    for transfer in (Transfer("t1", "acc-1", 100), Transfer("t2", "acc-1", -30)):
        await push_transfer(events, transfer)
    await push_transfer(events, Transfer("t1", "acc-1", 100))
    again = events.pull("requested", group="ledger")
    async for transfer in again:
        assert again.message is not None
        ledger.apply(transfer, again.message.headers["idempotency-key"])
    print(f"balances: {ledger.balances}; duplicates skipped: {ledger.duplicates}")
    await events.disconnect()
    return ledger.balances, ledger.duplicates


if __name__ == "__main__":
    trio.run(main)
