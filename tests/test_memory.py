"""The process memory policy: the glibc arena cap and handing freed memory back."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"


def _in_fresh_process(code: str, **env: str) -> str:
    """Run `code` in a new interpreter: the arena cap only holds before threads create arenas."""
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the arena cap is a glibc setting")
def test_the_arena_cap_is_applied_on_glibc() -> None:
    assert _in_fresh_process("from concord_pipelines.memory import limit_malloc_arenas; print(limit_malloc_arenas())") == "True"


def test_an_arena_count_set_by_the_user_is_left_alone() -> None:
    code = "from concord_pipelines.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    assert _in_fresh_process(code, MALLOC_ARENA_MAX="4") == "False"


def test_release_free_memory_collects_garbage_cycles() -> None:
    import gc
    import weakref

    from concord_pipelines.memory import release_free_memory

    class Node:
        pass

    node = Node()
    node.self = node  # a cycle: only the collector frees it
    alive = weakref.ref(node)
    del node
    gc.disable()
    try:
        release_free_memory()
    finally:
        gc.enable()
    assert alive() is None
