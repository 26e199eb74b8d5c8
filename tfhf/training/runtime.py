"""What every task sets up before building a model: the strategy, the numeric precision and
where this process writes."""

from __future__ import annotations

import contextlib
import dataclasses

import tensorflow as tf
import tf_keras

from tfhf.config import ExportConfig, TrainConfig
from tfhf.errors import TfhfError
from tfhf.training import strategy as strategies

_POLICIES = {"none": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


@dataclasses.dataclass
class Runtime:
    """The strategy and precision a run trains under, and its output folders.

    Build and compile the model inside `building()`; everything else runs outside it.
    """

    strategy: tf.distribute.Strategy
    precision: str  # "none", "fp16" or "bf16"
    placement: strategies.Placement

    @property
    def tpu(self) -> bool:
        return strategies.is_tpu(self.strategy)

    @property
    def mixed(self) -> bool:
        return self.precision != "none"

    @contextlib.contextmanager
    def building(self):
        """Variables are created on the strategy's devices, and layers take the run's
        precision policy; the global policy is restored on exit."""
        previous = tf_keras.mixed_precision.global_policy()
        tf_keras.mixed_precision.set_global_policy(_POLICIES[self.precision])
        try:
            with self.strategy.scope():
                yield
        finally:
            tf_keras.mixed_precision.set_global_policy(previous)


def start(config: TrainConfig) -> Runtime:
    """Selects the strategy and precision for `config` and prints what was chosen.

    On a TPU the run computes in bfloat16 (`--mixed_precision=none` becomes bf16; fp16 is
    refused, TPUs have no float16 matrix units).

    Example:
      >>> runtime = start(TrainConfig(strategy="default", batch_size=8))
      tfhf: default strategy, 1 replica(s); global batch 8 = 8 per replica
      >>> with runtime.building():
      ...     layer = tf_keras.layers.Dense(2)
      ...     layer.build([None, 3])
      >>> layer.kernel.dtype, runtime.mixed
      (tf.float32, False)
    """
    strategy = strategies.select_strategy(config.strategy, tpu=config.tpu)
    precision = config.mixed_precision
    if strategies.is_tpu(strategy):
        if precision == "fp16":
            raise TfhfError("--mixed_precision=fp16 is not supported on TPU; use bf16")
        precision = "bf16"
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % (replicas * config.grad_accum_steps):
        raise TfhfError(
            f"--batch_size={config.batch_size} must be a multiple of the {replicas} "
            f"replica(s) x --grad_accum_steps={config.grad_accum_steps}"
        )
    export_dir = config.export_dir if isinstance(config, ExportConfig) else ""
    placement = strategies.place_outputs(strategy, config.workdir, export_dir)
    extras = []
    if precision != "none":
        extras.append(f"mixed precision {_POLICIES[precision]}")
    if config.jit_compile:
        extras.append("XLA-compiled train step")
    if config.steps_per_execution > 1:
        extras.append(f"{config.steps_per_execution} steps per execution")
    if config.grad_accum_steps > 1:
        micro = config.batch_size // replicas // config.grad_accum_steps
        extras.append(f"{config.grad_accum_steps} micro-batches of {micro} per replica")
    if not placement.chief:
        extras.append("not the chief: outputs go to a temporary folder")
    print(
        f"tfhf: {strategies.describe(strategy, config.batch_size)}"
        + "".join(f"; {e}" for e in extras),
        flush=True,
    )
    return Runtime(strategy, precision, placement)
