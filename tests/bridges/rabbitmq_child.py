"""The RabbitMQ bridge of the conformance suite's kill -9 child process
(``python -m bus._check_child rabbitmq_child:make ...``, with this folder on PYTHONPATH)."""

from __future__ import annotations

import os

from bridges.rabbitmq import RabbitMQBridge


def make(name: str, group: str) -> RabbitMQBridge:
    return RabbitMQBridge(
        os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        name=name, group=group, exchange=os.environ["TRIO_BUS_TEST_EXCHANGE"],
    )
