"""Handing freed memory back to the system after large requests and unloaded models."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_memory(*, collect: bool = False) -> None:
    """Returns the C allocator's free pages to the system. A large request's tensors, or a
    model's weights once it is unloaded, are freed but stay in the process (glibc keeps
    them for reuse) until this runs; it takes a few milliseconds.

    Args:
      collect: Run Python's cycle collector first, so that objects held only by
        reference cycles (a loaded SavedModel's) are freed too.
    """
    if collect:
        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
