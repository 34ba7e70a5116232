"""benchmarks/gpu_check.py: refuses cleanly without CUDA; its one table keeps its format."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_refuses_without_cuda_in_one_line():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: no CUDA device")
    assert run.stdout == ""


def test_table_format_and_published_ratio():
    gpu = load()
    rows = [{"what": "train step", "batch": 15, "precision": "bf16", "seconds": 0.09, "excerpts/s": 166.7,
             "peak GPU GB": 2.345, "vs published": gpu.throughput_ratio(15, 0.09)},
            {"what": "evaluate 16 excerpts (CPU, every metric)", "batch": None, "precision": None,
             "seconds": 11.2, "excerpts/s": 1.43}]
    table = gpu.format_table(rows).splitlines()
    assert table[0] == "| what | batch | precision | seconds | excerpts/s | peak GPU GB | vs published |"
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert table[2] == "| train step | 15 | bf16 | 0.09 | 167 | 2.35 | 5.0x |"
    assert table[3] == "| evaluate 16 excerpts (CPU, every metric) | - | - | 11.2 | 1.43 | - | - |"
    assert gpu.throughput_ratio(64, 0.334) == "5.0x" and gpu.throughput_ratio(7, 1.0) is None
