"""Models ↔ ``EventMessage.data``: how ``BaseEvent`` encodes and decodes models.

``data`` is the JSON-able builtin form of a model (a dict), the seed's
``model.model_dump()``. ``push`` takes any instance that encodes to a JSON object — the
event's model, a newer version of it, another model altogether (the seed's saga pushes an
``InventoryReservation`` on ``InventoryEvent`` topics) — and decoding into the event's
model happens when the message is read, where a mismatch is reported. msgspec does the
work for Structs, dataclasses, attrs classes, TypedDicts and dicts
(``msgspec.to_builtins`` / ``msgspec.convert``); pydantic v2 models use their own
``model_dump(mode="json")`` / ``model_validate``, recognised by their attributes as the
bus's own codecs recognise them, so pydantic is never imported here.
"""

from __future__ import annotations

import typing
from typing import Any, Generic, TypeVar

import msgspec

from bus import DecodeError, PayloadTypeError
from bus.abc import describe

__all__ = ["ModelCodec"]

ModelT = TypeVar("ModelT")


def _is_pydantic_model(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__pydantic_fields__") and hasattr(
        tp, "model_validate_json"
    )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


class ModelCodec(Generic[ModelT]):
    """Encoder for anything JSON-object-shaped, decoder into one model type."""

    def __init__(self, model: type[ModelT]) -> None:
        self.model = model
        self.name = _type_name(model)
        self._pydantic = _is_pydantic_model(model)

    def encode(self, topic: str, obj: object) -> dict[str, Any]:
        """``obj`` as a JSON-able dict.

        Raises:
            PayloadTypeError: ``obj`` does not encode to a JSON object (naming the topic,
                the event's model and what was given).
        """
        try:
            if _is_pydantic_model(type(obj)):
                data: object = obj.model_dump(mode="json")  # type: ignore[attr-defined]
            else:
                data = msgspec.to_builtins(obj)
        except (TypeError, ValueError) as exc:
            raise PayloadTypeError(
                f"topic {topic!r} (model {self.name}): {describe(obj)} cannot be encoded as "
                f"JSON: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise PayloadTypeError(
                f"topic {topic!r} (model {self.name}): push takes a model instance that "
                f"encodes to a JSON object, got {describe(obj)} which encodes to "
                f"{type(data).__qualname__}"
            )
        return data

    def decode(self, topic: str, data: object) -> ModelT:
        """Build a ``model`` from message data.

        Raises:
            DecodeError: ``data`` does not fit the model (naming topic, model and reason).
        """
        try:
            if self._pydantic:
                return typing.cast(ModelT, self.model.model_validate(data))  # type: ignore[attr-defined]
            return msgspec.convert(data, self.model)
        except Exception as exc:
            # pydantic's ValidationError is a ValueError, msgspec's too; anything a
            # model's own validator raises means the same thing to the caller.
            raise DecodeError(
                f"topic {topic!r}: message data does not decode into {self.name}: {exc}"
            ) from exc
