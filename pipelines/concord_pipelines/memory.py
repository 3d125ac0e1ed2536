"""Process memory policy for long exports: keep the peak RSS flat as data grows.

Measured on a 1,000,000-event first load (docs/benchmarks.md): pyarrow's default allocator
(mimalloc) kept ~55 MB of freed page buffers, and the fetch phase left ~55 MB of freed Python and
malloc memory that the DuckDB load, which allocates with its own allocator, could not reuse.
glibc also gave each of the eight HTTP worker threads an arena of its own, each keeping freed pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
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


# mallopt's parameter number for the arena cap (M_ARENA_MAX in glibc's malloc.h).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas, unless MALLOC_ARENA_MAX is set; True if the cap was applied.

    glibc gives threads their own arena (up to 8 per core), and freed pages stay in the arena that
    freed them: the page buffers decoded on eight worker threads were spread over eight arenas.
    With two, a 1,000,000-event first load peaked at ~364 MB instead of ~383 MB, equally fast.
    Call it before the worker threads start: arenas that exist already stay.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _libc_function("mallopt")
    return bool(mallopt is not None and mallopt(_M_ARENA_MAX, arenas) == 1)


def release_free_memory() -> None:
    """Collect garbage cycles and return freed heap pages to the OS (glibc only; a no-op elsewhere).

    Called when a large fetch ends, before DuckDB's load allocates: without it the freed fetch
    buffers stay in the process and the load's peak sits on top of them.
    """
    gc.collect()
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


@cache
def _libc_function(name: str):  # type: ignore[no-untyped-def]
    """A glibc function, or None on other platforms (musl has neither malloc_trim nor the arena cap)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)
    except (OSError, AttributeError):
        return None
