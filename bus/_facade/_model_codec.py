"""Models ↔ ``EventMessage.data``: how ``BaseEvent`` checks, encodes and decodes models.

``data`` is the JSON-able builtin form of a model (a dict), the seed's
``model.model_dump()``. msgspec does the work for Structs, dataclasses, attrs classes,
TypedDicts and dicts (``msgspec.to_builtins`` / ``msgspec.convert``); pydantic v2 models
use their own ``model_dump(mode="json")`` / ``model_validate``, detected by duck typing so
pydantic is never imported here. This module knows nothing of topics' transport.
"""

from __future__ import annotations

import typing
from typing import Any, Generic, TypeVar

import msgspec

from .._errors import DecodeError, PayloadTypeError

__all__ = ["ModelCodec"]

ModelT = TypeVar("ModelT")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def _is_pydantic(tp: Any) -> bool:
    return (
        isinstance(tp, type)
        and callable(getattr(tp, "model_validate", None))
        and callable(getattr(tp, "model_dump", None))
    )


class ModelCodec(Generic[ModelT]):
    """Encoder and decoder for one model type."""

    def __init__(self, model: type[ModelT]) -> None:
        self.model = model
        self.name = _type_name(model)
        self._pydantic = _is_pydantic(model)
        origin = typing.get_origin(model) or model
        # TypedDicts and dict aliases cannot be isinstance-checked beyond "is a dict";
        # they are validated by converting instead.
        self._validate_by_convert = typing.is_typeddict(model) or not isinstance(origin, type)
        self._dict_like = typing.is_typeddict(model) or origin is dict
        self._check_type: type | None = None if self._validate_by_convert else origin
        if self._dict_like:
            self._check_type = dict
        self._validate_on_encode = self._validate_by_convert or (
            self._dict_like and model is not dict
        )

    def encode(self, topic: str, obj: object) -> dict[str, Any]:
        """``obj`` as a JSON-able dict.

        Raises:
            PayloadTypeError: ``obj`` is not a ``model`` (naming topic, expected and
                actual type), or it does not encode to a JSON object.
        """
        if self._check_type is not None and not isinstance(obj, self._check_type):
            raise PayloadTypeError(
                f"topic {topic!r} carries {self.name}, got {type(obj).__qualname__}: {obj!r:.80}"
            )
        try:
            if self._pydantic:
                data: object = obj.model_dump(mode="json")  # type: ignore[attr-defined]
            else:
                data = msgspec.to_builtins(obj)
                if self._validate_on_encode:
                    msgspec.convert(data, self.model)
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise PayloadTypeError(
                f"topic {topic!r} carries {self.name}, got {type(obj).__qualname__} "
                f"that does not fit it: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise PayloadTypeError(
                f"topic {topic!r}: {self.name} must encode to a JSON object (dict), "
                f"got {type(data).__qualname__}"
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
