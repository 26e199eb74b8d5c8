"""Writing outputs so that a reader never sees them half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tfhf.errors import TfhfError


def write_text_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary sibling and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def replace_folder(folder: Path, fill: Callable[[Path], None]) -> None:
    """Replaces `folder` by what `fill` writes into a fresh temporary sibling.

    Until `fill` has finished, `folder` keeps its old contents; a failure leaves no
    temporary folder behind.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        fill(staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def open_workdir(workdir: Path, flagfile: str) -> None:
    """Creates the run folder, retracts any earlier run's completion mark (metrics.json),
    and records the flags the run was started with."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TfhfError(f"cannot create workdir {workdir}: {e.strerror}") from None
    (workdir / "metrics.json").unlink(missing_ok=True)
    write_text_atomically(workdir / "flags.txt", flagfile)
