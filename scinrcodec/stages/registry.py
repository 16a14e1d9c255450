"""A registry of pipeline stages by id, so a file's header can name the stages that wrote it."""
from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CorruptFileError

_REGISTRY: dict[str, type["Stage"]] = {}


class Stage:
    """A pipeline stage: identified by `codec_id`, rebuilt from the dict `get_config` returns."""

    codec_id: ClassVar[str]

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, **self._params()}

    def _params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Stage":
        params = {k: v for k, v in config.items() if k != "id"}
        return cls(**params)


def register_stage(cls: type[Stage]) -> type[Stage]:
    _REGISTRY[cls.codec_id] = cls
    return cls


def get_stage(config: Any) -> Stage:
    """Rebuild a stage from its stored config, rejecting unknown ids and bad parameters."""
    if not isinstance(config, dict) or not isinstance(config.get("id"), str):
        raise CorruptFileError("stage config is malformed")
    cls = _REGISTRY.get(config["id"])
    if cls is None:
        raise CorruptFileError(f"unknown stage {config['id']!r}")
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(f"stage {config['id']!r} has invalid parameters ({exc})") from exc
