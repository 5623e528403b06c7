"""Payload types and their codecs: checking, encoding and decoding payloads.

A topic binds a name to a payload type; :func:`codec_for` picks the codec for that
type once, at declaration, so ``publish`` only runs a cheap check:

- msgspec ``Struct``, dataclasses, attrs classes and other plain classes:
  ``isinstance``; encoded with msgspec JSON;
- ``TypedDict``, ``dict[...]``, ``list[...]`` and other typing forms: validated with
  ``msgspec.convert`` (strict), encoded with msgspec JSON;
- pydantic v2 models: ``isinstance``; encoded/decoded by pydantic itself
  (:class:`PydanticCodec`, imported only when such a type is declared);
- ``object`` / ``typing.Any``: anything msgspec can encode.

The encoded form (JSON bytes) is what bridges put on the wire and what retention
counts in ``max_bytes``. This module does not know about topics or trio.
"""

from __future__ import annotations

import typing
from typing import Any, Generic, TypeVar

import msgspec

from ._envelope import describe
from ._errors import DecodeError, PayloadTypeError

__all__ = ["Codec", "PydanticCodec", "RawCodec", "codec_for"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class Codec(Generic[T]):
    """Checks, encodes and decodes payloads of one declared type (msgspec JSON)."""

    __slots__ = ("_decoder", "exact", "type", "type_name")

    def __init__(self, tp: Any) -> None:
        self.type: Any = tp
        self.type_name = getattr(tp, "__qualname__", None) or repr(tp)
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(tp)
        # Classes check with isinstance; typing forms (TypedDict, dict[str, int]...) by
        # validation, since isinstance cannot see inside them.
        self.exact: type | None = tp if _is_plain_class(tp) else None

    def check(self, topic: str, payload: Any) -> None:
        """Raise :class:`PayloadTypeError` unless *payload* is of this codec's type."""
        exact = self.exact
        if exact is not None:
            if isinstance(payload, exact):
                return
        elif self.type is object or self.type is Any:
            return
        else:
            try:
                msgspec.convert(payload, self.type, strict=True)
                return
            except (msgspec.ValidationError, TypeError) as exc:
                raise PayloadTypeError(
                    f"topic {topic!r} expects {self.type_name}, got {describe(payload)} "
                    f"that does not validate: {exc}"
                ) from None
        raise PayloadTypeError(
            f"topic {topic!r} expects {self.type_name}, got {describe(payload)}; "
            f"publish a value of type {self.type_name} or declare the topic with another type"
        )

    def encode(self, payload: T) -> bytes:
        return _encoder.encode(payload)

    def decode(self, data: bytes | bytearray | memoryview) -> T:
        """Decode JSON *data* into the declared type, or raise :class:`DecodeError`."""
        try:
            result: T = self._decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"cannot decode payload as {self.type_name}: {exc}") from None
        return result


class RawCodec(Codec[bytes]):
    """Bytes as they are: no JSON, no schema. For topics a process only passes on (the
    ``bus bridge`` service's ``payload = "raw"``); not chosen by :func:`codec_for`."""

    def __init__(self) -> None:
        self.type = bytes
        self.type_name = "raw bytes"
        self.exact = bytes

    def check(self, topic: str, payload: Any) -> None:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise PayloadTypeError(
                f"topic {topic!r} carries raw bytes, got {describe(payload)}; publish bytes"
            )

    def encode(self, payload: bytes) -> bytes:
        return bytes(payload)

    def decode(self, data: bytes | bytearray | memoryview) -> bytes:
        return bytes(data)


class PydanticCodec(Codec[T]):
    """Codec for pydantic v2 models (``model_dump_json`` / ``model_validate_json``)."""

    def __init__(self, tp: Any) -> None:
        self.type = tp
        self.type_name = tp.__qualname__
        self.exact = tp

    def encode(self, payload: T) -> bytes:
        data: bytes = payload.model_dump_json().encode()  # type: ignore[attr-defined]
        return data

    def decode(self, data: bytes | bytearray | memoryview) -> T:
        import pydantic

        try:
            result: T = self.type.model_validate_json(bytes(data))
        except pydantic.ValidationError as exc:
            raise DecodeError(f"cannot decode payload as {self.type_name}: {exc}") from None
        return result


def _is_plain_class(tp: Any) -> bool:
    if not isinstance(tp, type) or tp is object:
        return False
    return not typing.is_typeddict(tp)


def _is_pydantic_model(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__pydantic_fields__") and hasattr(
        tp, "model_validate_json"
    )


def codec_for(tp: Any) -> Codec[Any]:
    """The codec for payload type *tp*; raises a clear error for unsupported types."""
    if _is_pydantic_model(tp):
        return PydanticCodec(tp)
    try:
        return Codec(tp)
    except TypeError as exc:
        if isinstance(tp, type):  # a class msgspec cannot describe: isinstance only
            return _OpaqueCodec(tp)
        raise PayloadTypeError(
            f"{tp!r} cannot be a payload type: {exc}; use a msgspec.Struct, dataclass, "
            "attrs class, TypedDict, dict or a pydantic model"
        ) from None


class _OpaqueCodec(Codec[T]):
    """A class msgspec cannot describe: checked by isinstance, encoded as best effort.

    Decoding is refused with a clear error, since there is no schema to decode into.
    """

    def __init__(self, tp: type) -> None:
        self.type = tp
        self.type_name = tp.__qualname__
        self.exact = tp

    def decode(self, data: bytes | bytearray | memoryview) -> T:
        raise DecodeError(
            f"{self.type_name} cannot be decoded from bytes: declare the topic with a "
            "msgspec.Struct, dataclass, attrs class or TypedDict to carry it over a bridge"
        )
