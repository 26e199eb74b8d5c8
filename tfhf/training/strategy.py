"""Choosing the `tf.distribute` strategy a run trains under, and where each worker writes."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from tfhf.errors import TfhfError


def _gpus() -> list:
    return tf.config.list_logical_devices("GPU")


def _tpu_visible(tpu: str) -> bool:
    """Whether a TPU is worth asking for: named, Colab's (TPU node), or attached (TPU VM)."""
    return bool(
        tpu
        or os.environ.get("COLAB_TPU_ADDR")
        or os.environ.get("TPU_NAME")
        or glob.glob("/dev/accel*")
        or glob.glob("/dev/vfio/[0-9]*")
    )


def _connect_tpu(tpu: str):
    """The TPU cluster resolver for `tpu` (a name or grpc:// address; '' = Colab's TPU node,
    else the TPU attached to this VM), connected and initialised; None when no TPU answers."""
    if not tpu:
        colab = os.environ.get("COLAB_TPU_ADDR")
        tpu = f"grpc://{colab}" if colab else "local"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None
    return resolver


def select_strategy(name: str, *, tpu: str = "") -> tf.distribute.Strategy:
    """The strategy `--strategy=name` asks for.

    `auto` takes a TPU when one answers (a named `--tpu`, or Colab's local one), else
    `MirroredStrategy` when more than one GPU is visible, else the default strategy.
    `multi_worker` reads the cluster from `TF_CONFIG`, as every TensorFlow multi-worker
    job does.

    Raises:
      TfhfError: when the asked-for hardware or cluster is not there.

    Example:
      >>> select_strategy("default").num_replicas_in_sync
      1
    """
    if name == "auto":
        if _tpu_visible(tpu):
            resolver = _connect_tpu(tpu)
            if resolver is not None:
                return tf.distribute.TPUStrategy(resolver)
        if len(_gpus()) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = _gpus()
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
        if not cluster.get("cluster") or not cluster.get("task"):
            raise TfhfError(
                "--strategy=multi_worker needs TF_CONFIG with 'cluster' and 'task' "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}})'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = _connect_tpu(tpu)
        if resolver is None:
            where = (
                f"'{tpu}'" if tpu else "on this machine (in Colab: Runtime > Change runtime type)"
            )
            raise TfhfError(f"--strategy=tpu: no TPU found {where}")
        return tf.distribute.TPUStrategy(resolver)
    raise TfhfError(f"unknown --strategy '{name}'")


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs: always, except on the non-chief
    workers of a multi-worker job."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief" or task_type is None:
        return True
    # Without an explicit chief, worker 0 is the chief, as in Keras.
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


@dataclasses.dataclass
class Placement:
    """Where this process writes: the run's folders on the chief, throwaway ones elsewhere."""

    chief: bool
    workdir: Path
    export_dir: str  # empty for a task that exports nothing
    _scratch: Path | None = None

    def cleanup(self) -> None:
        """Removes a non-chief's throwaway folders."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def place_outputs(strategy: tf.distribute.Strategy, workdir: str, export_dir: str) -> Placement:
    """The chief keeps `workdir` and `export_dir`; other workers get temporary folders, so
    that every worker can run the same code and only the chief's outputs remain."""
    if is_chief(strategy):
        return Placement(True, Path(workdir), export_dir)
    scratch = Path(tempfile.mkdtemp(prefix="tfhf-worker-"))
    return Placement(False, scratch / "workdir", export_dir and str(scratch / "export"), scratch)


def describe(strategy: tf.distribute.Strategy, global_batch: int) -> str:
    """One log line: the strategy, its replica count and the per-replica batch."""
    replicas = strategy.num_replicas_in_sync
    kind = "default strategy"
    # The public names: the classes behind some of them are named otherwise.
    for cls, name in (
        (tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
        (tf.distribute.MirroredStrategy, "MirroredStrategy"),
        (tf.distribute.TPUStrategy, "TPUStrategy"),
        (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy"),
    ):
        if isinstance(strategy, cls):
            kind = name
            break
    per_replica = global_batch / replicas
    shown = f"{per_replica:g}" if per_replica != int(per_replica) else str(int(per_replica))
    return f"{kind}, {replicas} replica(s); global batch {global_batch} = {shown} per replica"
