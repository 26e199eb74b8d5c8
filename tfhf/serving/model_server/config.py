"""Which models to serve: one `ModelSpec` per model, from flags or TF Serving's config file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk are served, as TF Serving's `model_version_policy` says:
    the `latest` N (the default, N = 1), `all`, or `specific` ones."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, versions: list[int]) -> set[int]:
        """The versions to serve out of `versions` (those on disk that can be loaded).

        Example:
          >>> sorted(VersionPolicy("latest", num_versions=2).select([1, 3, 7]))
          [3, 7]
        """
        if self.kind == "all":
            return set(versions)
        if self.kind == "specific":
            return set(versions) & set(self.versions)
        return set(sorted(versions)[-self.num_versions :])


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One served model: its name, the folder holding its integer version folders, which
    of them to serve, and the labels that name versions (`stable` -> 3)."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = dataclasses.field(default_factory=dict, hash=False)

    def versions_on_disk(self) -> list[int] | None:
        """The integer version folders under `base_path`, ascending; None if `base_path`
        is missing (or cannot be read). Numbers beyond int64, which TF Serving's protocol
        cannot carry, are listed too: the caller leaves them out."""
        try:
            names = [p.name for p in self.base_path.iterdir() if p.is_dir()]
        except OSError:
            return None
        return sorted(int(name) for name in names if is_decimal(name))


# The largest version TF Serving's protocol carries (ModelSpec.version is an int64).
MAX_VERSION = 2**63 - 1


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
      ValueError: The text does not parse, or `specs_from_config` refuses it.

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
    return specs_from_config(config)


def specs_from_config(config: model_server_config_pb2.ModelServerConfig) -> list[ModelSpec]:
    """One `ModelSpec` per entry of a `ModelServerConfig` (a file's, or a reload request's).

    Raises:
      ValueError: The config names no model, a model twice, a config without a name or
        base path, a platform other than TensorFlow, a `specific` policy of no version, or
        a label on a negative version.
    """
    specs = []
    for entry in config.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise ValueError("model config: every config needs a name and a base_path")
        if entry.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model config: platform '{entry.model_platform}' is not supported")
        specs.append(
            ModelSpec(
                entry.name,
                Path(entry.base_path),
                _policy(entry),
                {label: int(v) for label, v in entry.version_labels.items()},
            )
        )
        if any(v < 0 for v in specs[-1].labels.values()):
            raise ValueError(f"model config: model {entry.name}: a label names a negative version")
    if not specs:
        raise ValueError("model config: model_config_list names no model")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("model config: model names must be unique")
    return specs


def _policy(entry: model_server_config_pb2.ModelConfig) -> VersionPolicy:
    policy = entry.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        if not policy.specific.versions:
            raise ValueError(f"model config: model {entry.name}: 'specific' names no version")
        return VersionPolicy("specific", versions=tuple(int(v) for v in policy.specific.versions))
    if which == "latest":
        # An unsigned count; unset (0) is read as 1, as TF Serving reads it.
        return VersionPolicy("latest", num_versions=policy.latest.num_versions or 1)
    return VersionPolicy()
