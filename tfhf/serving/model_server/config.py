"""Which models to serve: one `ModelSpec` per model, from flags or TF Serving's config file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One served model: its name and the folder holding its integer version folders."""

    name: str
    base_path: Path

    def versions_on_disk(self) -> list[int]:
        """The integer version folders under `base_path`, ascending; `[]` if it is missing."""
        if not self.base_path.is_dir():
            return []
        return sorted(
            int(p.name) for p in self.base_path.iterdir() if is_decimal(p.name) and p.is_dir()
        )


def is_decimal(text: str) -> bool:
    """Whether `text` is a plain decimal number (`str.isdecimal` alone also takes '٣')."""
    return text.isascii() and text.isdecimal()


def parse_model_config(text: str) -> list[ModelSpec]:
    """Models from TF Serving's text-format `ModelServerConfig` (`--model_config_file`).

    Args:
      text: The config file's contents.

    Returns:
      One spec per `config` entry, in file order.

    Raises:
      ValueError: The text does not parse, or names no model, a model twice, a config
        without a name or base path, or a platform other than TensorFlow.

    Example:
      >>> parse_model_config('model_config_list { config { name: "c" base_path: "/m/c" '
      ...                    'model_platform: "tensorflow" } }')[0].name
      'c'
    """
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"model config: {e}") from None
    specs = []
    for entry in config.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise ValueError("model config: every config needs a name and a base_path")
        if entry.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model config: platform '{entry.model_platform}' is not supported")
        specs.append(ModelSpec(entry.name, Path(entry.base_path)))
    if not specs:
        raise ValueError("model config: model_config_list names no model")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("model config: model names must be unique")
    return specs
