"""choirbench.memory: the scoped mmap threshold sets, then leaves a fixed threshold behind, even on error."""
from __future__ import annotations

import pytest

from choirbench import memory


def test_mmap_threshold_sets_then_restores_the_ceiling(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "set_mmap_threshold", lambda mb: calls.append(mb) or mb > 0)
    with pytest.raises(RuntimeError):
        with memory.mmap_threshold(4) as changed:
            assert changed and calls == [4]
            raise RuntimeError("the block fails")
    assert calls == [4, memory.GLIBC_DYNAMIC_MMAP_MAX_MB]  # restored on the way out of an error too
    calls.clear()
    with memory.mmap_threshold(0) as changed:
        assert not changed
    assert calls == [0]  # nothing was set, so nothing is restored


def test_real_mallopt_accepts_the_values_used():
    if memory._libc() is None:
        pytest.skip("not glibc")
    with memory.mmap_threshold(4) as changed:
        assert changed



def test_keep_freed_memory_sets_glibcs_ceiling_and_a_large_trim_threshold(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, option, value):
            calls.append((option, value))
            return 1

    monkeypatch.setattr(memory, "_libc", lambda: FakeLibc())
    assert memory.keep_freed_memory()
    assert calls == [(-3, 32 << 20), (-1, memory.KEEP_TRIM_THRESHOLD_MB << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert not memory.keep_freed_memory()  # off glibc: a no-op


def test_real_glibc_accepts_keep_freed_memory():
    if memory._libc() is None:
        pytest.skip("not glibc")
    assert memory.keep_freed_memory()
