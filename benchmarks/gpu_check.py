"""GPU check of the source-filter model in one command (issue 16, item 3): one table in under 8 minutes.

    python benchmarks/gpu_check.py [--steps 5] [--budget-s 420]

Measures, on the first CUDA device:

* paper-size unsupervised training steps (J = 4, 4-s excerpts, the paper's layer sizes) at batch
  15 and 64, in float32 and bfloat16 autocast: seconds per step (median after one warm-up step),
  excerpts per second, peak GPU memory (``torch.cuda.max_memory_allocated``), and the throughput
  ratio to the published implementation on an H200 (0.45 s/step at batch 15, 13 GB; 1.67 s/step at
  batch 64, 56 GB — the figures quoted in issue 16; goal: at least 5x its throughput);
* separation throughput: batches of 4-s SATB excerpts through the network (masking), excerpts/s;
* evaluation of one excerpt set (every metric of ``choirbench evaluate`` on 16 excerpts, CPU), s.

Refuses to run without CUDA (exit code 2, one line). Each section stops early when the time
budget is spent, and the table says so. The table format is pinned by ``tests/test_gpu_check.py``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

PUBLISHED = {15: (0.45, 13.0), 64: (1.67, 56.0)}
"""Batch size -> (s/step, peak GB) of the published implementation on an H200 (issue 16)."""
# "seconds": per training step, per separated batch, or for the whole evaluation
COLUMNS = ("what", "batch", "precision", "seconds", "excerpts/s", "peak GPU GB", "vs published")


def format_table(rows: list[dict]) -> str:
    """Rows (dicts keyed by COLUMNS, values already formatted or numbers) as one Markdown table."""
    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def throughput_ratio(batch: int, s_per_step: float) -> str | None:
    """This implementation's excerpts/s over the published one's at the same batch, e.g. '7.2x'."""
    if batch not in PUBLISHED or s_per_step <= 0:
        return None
    return f"{PUBLISHED[batch][0] / s_per_step:.1f}x"


def require_cuda():
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device is visible (torch.cuda.is_available() is False); "
              "run this on a machine with an NVIDIA GPU and a CUDA build of torch", file=sys.stderr)
        sys.exit(2)
    return torch


def inputs(np, batch: int, J: int = 4, n: int = 64000, seed: int = 0):
    """Noise mixtures and vibrato F0 tracks of SATB-like pitches, [B, N] and [B, J, T]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n // 256) * 256 / 16000
    base = np.array([440.0, 330.0, 247.0, 147.0])[:J]
    f0 = base[None, :, None] * 2 ** (0.4 / 12 * np.sin(2 * np.pi * 5.5 * t))[None, None] * np.ones((batch, 1, 1))
    return (rng.standard_normal((batch, n)).astype(np.float32) * 0.1, f0.astype(np.float32))


def train_steps(torch, np, batch: int, precision: str, steps: int, deadline: float) -> dict:
    from choirbench.methods.sf import PAPER_PARAMS, SourceFilter
    from choirbench.methods.sf_model import SourceFilterNet

    method = SourceFilter({**PAPER_PARAMS, "device": "cuda", "precision": precision, "supervised": False,
                           "batch_size": batch})
    model = SourceFilterNet(method.architecture()).to(method.torch_device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    mix, f0 = inputs(np, batch)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = method.loss(model, method.make_batch(mix, None, f0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline and len(times) >= 2:
            break
    s = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {"what": "train step" + ("" if len(times) > steps else " (budget: fewer steps)"), "batch": batch,
            "precision": precision, "seconds": s, "excerpts/s": batch / s,
            "peak GPU GB": torch.cuda.max_memory_allocated() / 1e9, "vs published": throughput_ratio(batch, s)}


def separation(torch, np, batch: int, deadline: float) -> dict:
    from choirbench.methods.sf import PAPER_PARAMS, SourceFilter
    from choirbench.methods.sf_model import SourceFilterNet

    method = SourceFilter({**PAPER_PARAMS, "device": "cuda"})
    model = SourceFilterNet(method.architecture()).to(method.torch_device).eval()
    mix, f0 = inputs(np, batch)
    torch.cuda.reset_peak_memory_stats()
    done, started = 0, None
    with torch.no_grad():
        for i in range(6):
            if i == 1:
                torch.cuda.synchronize()
                started = time.perf_counter()
            m, _, f, harm, noise = method.make_batch(mix, None, f0)
            voices = model(m, f, harm, noise, method._autocast())
            # masking as the method does it: ratio masks of the synthesised voices on the mixture's STFT
            window = torch.hann_window(2048, device=m.device)
            spec = torch.stft(voices.reshape(-1, voices.shape[-1]), 2048, 256, window=window, return_complex=True)
            mspec = torch.stft(m, 2048, 256, window=window, return_complex=True)
            mag = spec.abs().reshape(batch, 4, *spec.shape[-2:])
            masks = mag / mag.sum(1, keepdim=True).clamp_min(1e-8)
            torch.istft((masks * mspec[:, None]).reshape(-1, *spec.shape[-2:]), 2048, 256, window=window,
                        length=m.shape[-1])
            if i >= 1:
                done += batch
            if time.perf_counter() > deadline and i >= 2:
                break
    torch.cuda.synchronize()
    s = time.perf_counter() - started
    return {"what": "separate (masking)", "batch": batch, "precision": "fp32", "seconds": s / max(done // batch, 1),
            "excerpts/s": done / s, "peak GPU GB": torch.cuda.max_memory_allocated() / 1e9, "vs published": None}


def evaluation(np, count: int = 16) -> dict:
    from choirbench.evaluation.evaluate import score_example

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(count):
        refs = rng.standard_normal((4, 64000)) * 0.1
        score_example(refs, refs + 0.05 * rng.standard_normal(refs.shape), 16000, refs.sum(0))
    s = time.perf_counter() - started
    return {"what": f"evaluate {count} excerpts (CPU, every metric)", "batch": None, "precision": None,
            "seconds": s, "excerpts/s": count / s, "peak GPU GB": None, "vs published": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per configuration")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop early after this many seconds")
    opts = parser.parse_args(argv)
    torch = require_cuda()
    import numpy as np

    started = time.perf_counter()
    plan = [("train", 15, "fp32"), ("train", 15, "bf16"), ("train", 64, "bf16"), ("train", 64, "fp32"),
            ("separate", 64, None), ("evaluate", None, None)]
    rows = []
    for index, (kind, batch, precision) in enumerate(plan):
        left = opts.budget_s - (time.perf_counter() - started)
        if left <= 0:
            rows.append({"what": f"{kind} (skipped: time budget spent)", "batch": batch, "precision": precision})
            continue
        deadline = time.perf_counter() + left / (len(plan) - index)
        try:
            if kind == "train":
                rows.append(train_steps(torch, np, batch, precision, opts.steps, deadline))
            elif kind == "separate":
                rows.append(separation(torch, np, batch, deadline))
            else:
                rows.append(evaluation(np))
        except torch.cuda.OutOfMemoryError:
            rows.append({"what": f"{kind} (out of GPU memory)", "batch": batch, "precision": precision})
        torch.cuda.empty_cache()
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(format_table(rows))
    print(f"(took {time.perf_counter() - started:.0f} s; published on an H200: batch 15 {PUBLISHED[15][0]} s/step, "
          f"{PUBLISHED[15][1]:.0f} GB; batch 64 {PUBLISHED[64][0]} s/step, {PUBLISHED[64][1]:.0f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
