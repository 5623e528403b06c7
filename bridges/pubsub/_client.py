"""The Pub/Sub clients a bridge uses, made for the emulator or for Google Cloud.

- :class:`PubSubCalls` wraps the generated synchronous clients (``PublisherClient``,
  ``SubscriberClient`` of ``google.pubsub_v1``) for publishing and admin. Each method
  blocks; the bridge runs it in a trio worker thread, one crossing per call: a batch of
  envelopes is one ``Publish`` request per topic (measured faster than both the threaded
  ``google.cloud.pubsub_v1.PublisherClient`` and the generated asyncio client, see
  ``_bridge``). gRPC's synchronous channels start no Python thread of their own.
- ingress uses the same subscriber client's unary ``Pull``, ``Acknowledge`` and
  ``ModifyAckDeadline`` (see ``_bridge`` for why not StreamingPull).

With ``emulator_host`` the channels are plaintext to that address with no credentials;
otherwise the credentials file (``credentials_path``) or Application Default
Credentials. Nothing here logs credentials or puts them in a repr.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bus import ConfigurationError
from bus.abc import file_secrets, redact

__all__ = ["Endpoint", "NotSent", "PubSubCalls"]

SCOPES = ("https://www.googleapis.com/auth/pubsub",)
ACK_IDS_PER_REQUEST = 1000
"""Acknowledge/ModifyAckDeadline requests are limited to 512 kB: 1,000 ack ids fit."""


@dataclass(frozen=True)
class Endpoint:
    """Where the service is and how to authenticate."""

    project: str
    emulator_host: str | None = None
    credentials_path: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    """Seconds for each unary call (publish, admin)."""

    def credentials(self) -> Any:
        if self.emulator_host:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        if self.credentials_path:
            from google.oauth2 import service_account

            try:
                return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    self.credentials_path, scopes=SCOPES
                )
            except (OSError, ValueError) as exc:
                raise _unloadable(self.credentials_path, exc)  # noqa: B904 - cause set inside
        return None  # Application Default Credentials

    def topic_path(self, tid: str) -> str:
        return f"projects/{self.project}/topics/{tid}"

    def subscription_path(self, sid: str) -> str:
        return f"projects/{self.project}/subscriptions/{sid}"


class NotSent(Exception):
    """A publish request held back because an earlier one to its topic failed."""


Record = tuple[bytes, dict[str, str], str]
"""``(data, attributes, ordering_key)`` of one message."""


class PubSubCalls:
    """Publishing and admin; every method blocks (run it in a worker thread)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.publisher: Any = None
        self.subscriber: Any = None

    def start(self) -> None:
        from google.pubsub_v1.services.publisher import PublisherClient
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber import SubscriberClient
        from google.pubsub_v1.services.subscriber.transports.grpc import (
            SubscriberGrpcTransport,
        )

        ep = self.endpoint
        if ep.emulator_host:
            import grpc

            # Plaintext channels to exactly this address (the generated clients would
            # otherwise read PUBSUB_EMULATOR_HOST from the environment).
            self.publisher = PublisherClient(
                transport=PublisherGrpcTransport(channel=grpc.insecure_channel(ep.emulator_host))
            )
            self.subscriber = SubscriberClient(
                transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(ep.emulator_host))
            )
        else:
            creds = ep.credentials()
            self.publisher = PublisherClient(credentials=creds)
            self.subscriber = SubscriberClient(credentials=creds)

    def close(self) -> None:
        for client in (self.publisher, self.subscriber):
            if client is not None:
                client.transport.close()
        self.publisher = self.subscriber = None

    # -- publishing ---------------------------------------------------------------------

    def publish(
        self, requests: Sequence[tuple[str, Sequence[Record]]]
    ) -> list[BaseException | None]:
        """Send each ``(topic_path, [record...])`` request, one after the other; the
        outcome of each. Once a request to a topic failed, the later ones to that topic
        are not sent (:class:`NotSent`): they could put a key's later messages first."""
        from google.pubsub_v1.types import PublishRequest, PubsubMessage

        # The request is built as the protobuf message itself and wrapped once: handing
        # the client proto-plus messages costs a marshal step per message (building and
        # serializing 256 messages of ~200 B: 8.3-10.5 us a message that way, 5.2-5.5
        # this way, best of 30), and the wrapped request is sent as it is.
        message, request, wrap = PubsubMessage.pb(), PublishRequest.pb(), PublishRequest.wrap
        out: list[BaseException | None] = []
        failed: set[str] = set()
        timeout = self.endpoint.timeout
        for path, records in requests:
            if path in failed:
                out.append(NotSent(f"not sent: an earlier request to {path} failed"))
                continue
            publish = wrap(request(topic=path, messages=[
                message(data=data, attributes=attrs, ordering_key=key)
                for data, attrs, key in records
            ]))
            try:
                self.publisher.publish(request=publish, timeout=timeout)
            except Exception as exc:
                failed.add(path)
                out.append(exc)
            else:
                out.append(None)
        return out

    # -- admin --------------------------------------------------------------------------

    def list_topics(self) -> list[str]:
        ep = self.endpoint
        pager = self.publisher.list_topics(project=f"projects/{ep.project}", timeout=ep.timeout)
        return [t.name.rsplit("/", 1)[-1] for t in pager]

    def create_topic(self, tid: str, labels: dict[str, str] | None = None) -> bool:
        """Create topic *tid*; False if it existed."""
        from google.api_core import exceptions

        try:
            self.publisher.create_topic(
                request={"name": self.endpoint.topic_path(tid), "labels": labels or {}},
                timeout=self.endpoint.timeout,
            )
        except exceptions.AlreadyExists:
            return False
        return True

    def delete_topic(self, tid: str) -> None:
        from google.api_core import exceptions

        try:
            self.publisher.delete_topic(
                topic=self.endpoint.topic_path(tid), timeout=self.endpoint.timeout
            )
        except exceptions.NotFound:
            pass

    def create_subscription(self, sid: str, tid: str, ack_deadline: int, ordering: bool) -> bool:
        """Create subscription *sid* to topic *tid*; False if it existed."""
        from google.api_core import exceptions

        try:
            self.subscriber.create_subscription(
                request={
                    "name": self.endpoint.subscription_path(sid),
                    "topic": self.endpoint.topic_path(tid),
                    "ack_deadline_seconds": ack_deadline,
                    "enable_message_ordering": ordering,
                },
                timeout=self.endpoint.timeout,
            )
        except exceptions.AlreadyExists:
            return False
        return True

    def list_subscriptions(self, tid: str | None = None) -> list[str]:
        """Subscription ids of the project, or of topic *tid*."""
        ep = self.endpoint
        if tid is None:
            pager = self.subscriber.list_subscriptions(
                project=f"projects/{ep.project}", timeout=ep.timeout
            )
            return [s.name.rsplit("/", 1)[-1] for s in pager]
        names = self.publisher.list_topic_subscriptions(
            topic=ep.topic_path(tid), timeout=ep.timeout
        )
        return [name.rsplit("/", 1)[-1] for name in names]

    def delete_subscription(self, sid: str) -> None:
        from google.api_core import exceptions

        try:
            self.subscriber.delete_subscription(
                subscription=self.endpoint.subscription_path(sid), timeout=self.endpoint.timeout
            )
        except exceptions.NotFound:
            pass

    # -- consuming ----------------------------------------------------------------------

    def pull(self, sid: str, max_messages: int, wait: float) -> list[Any]:
        """Up to *max_messages* ``ReceivedMessage``s as raw protobuf messages (cheaper to
        read than proto-plus wrappers); ``[]`` if none came within about *wait* seconds
        (the service holds a pull open a while when nothing is there)."""
        from google.api_core import exceptions

        try:
            response = self.subscriber.pull(
                request={
                    "subscription": self.endpoint.subscription_path(sid),
                    "max_messages": max_messages,
                },
                timeout=wait, retry=None,
            )
        except exceptions.DeadlineExceeded:
            return []
        return list(type(response).pb(response).received_messages)

    def acknowledge(self, sid: str, ack_ids: Sequence[str]) -> None:
        path = self.endpoint.subscription_path(sid)
        for i in range(0, len(ack_ids), ACK_IDS_PER_REQUEST):
            self.subscriber.acknowledge(
                subscription=path, ack_ids=ack_ids[i : i + ACK_IDS_PER_REQUEST],
                timeout=self.endpoint.timeout,
            )

    def modify_ack_deadline(self, sid: str, ack_ids: Sequence[str], seconds: int) -> None:
        """Extend (or with 0: give up) the lease of *ack_ids*."""
        path = self.endpoint.subscription_path(sid)
        for i in range(0, len(ack_ids), ACK_IDS_PER_REQUEST):
            self.subscriber.modify_ack_deadline(
                subscription=path, ack_ids=ack_ids[i : i + ACK_IDS_PER_REQUEST],
                ack_deadline_seconds=seconds, timeout=self.endpoint.timeout,
            )

    def probe(self, seconds: float) -> None:
        """One cheap call that needs the service: list one topic."""
        self.publisher.list_topics(
            request={"project": f"projects/{self.endpoint.project}", "page_size": 1},
            timeout=seconds, retry=None,
        )



def _unloadable(path: str, exc: BaseException) -> ConfigurationError:
    """The error for a credentials file the client refused; what the file holds is
    masked in it (the path is not secret)."""
    what = f"{type(exc).__name__}: {exc}"
    shown = redact(what, *file_secrets(path))
    error = ConfigurationError(
        f"Pub/Sub credentials file {path!r} cannot be used ({shown}); point "
        "credentials_path / GCP_CREDENTIALS_PATH at a service account key (JSON)"
    )
    # A traceback prints the cause too: keep it only when it quotes no secret.
    error.__cause__ = exc if shown == what else None
    error.__suppress_context__ = True
    return error
