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
