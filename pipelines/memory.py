"""Process memory policy for long exports: keep the peak RSS flat as data grows.

Measured on a 1,000,000-event first load (docs/benchmarks.md): pyarrow's default allocator
(mimalloc) kept ~55 MB of freed page buffers, and the fetch phase left ~55 MB of freed Python and
malloc memory that the DuckDB load, which allocates with its own allocator, could not reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache

import pyarrow as pa


def use_system_allocator_for_arrow() -> None:
    """Arrow buffers from malloc, whose freed memory `release_free_memory` can hand back.

    Pages decoded by arrow's JSON reader live for milliseconds; mimalloc keeps their segments
    around per thread. The system allocator is as fast here (1,000,000 events fetched in 6.3 s
    against 7.0 s) and holds ~55 MB less.
    """
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def release_free_memory() -> None:
    """Collect garbage cycles and return freed heap pages to the OS (glibc only; a no-op elsewhere).

    Called when a large fetch ends, before DuckDB's load allocates: without it the freed fetch
    buffers stay in the process and the load's peak sits on top of them.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
