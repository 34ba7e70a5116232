"""Speed of the F0-conditioned U-Net (`unet`): one training step at batch 16 and one 4-s SATB separation.

Measured for the paper's width (16 ... 512 channels) and the CPU default width,
on one thread by default (per-core figures), with the `oracle` bound's
separation as the baseline measured in the same run. Optionally times the
training sampler on a prepared dataset (``--data``), which is part of every
training step.

    python benchmarks/bench_unet.py [--device cuda] [--threads 1] [--data results/data/synth-chorales]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from choirbench import HOP, SAMPLE_RATE
from choirbench.methods.bounds import OracleBound
from choirbench.methods.unet import PAPER_CHANNELS, Spectrogram, UNet, count_parameters

N = 4 * SAMPLE_RATE


def timed(fn, repeats: int, sync) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=None, help="a prepared dataset: also time the training sampler")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    print(f"device {device}, {args.threads} thread(s), batch {args.batch}, 4-s excerpts, torch {torch.__version__}")

    mixture = (0.2 * rng.standard_normal(N)).astype(np.float32)
    f0 = np.stack([np.full(N // HOP, hz) for hz in (523.0, 392.0, 262.0, 131.0)])
    references = np.stack([mixture / 4] * 4)
    oracle = OracleBound({"n_fft": 1024})
    t_oracle = timed(lambda: oracle.separate(mixture, SAMPLE_RATE, f0, references=references), args.repeats,
                     lambda: None)
    print(f"baseline: oracle separation (numpy STFT 1024) {1000 * t_oracle:8.1f} ms per 4-s SATB excerpt")

    widths = {"paper": PAPER_CHANNELS, "cpu-default": UNet.defaults["channels"]}
    results = {}
    for label, channels in widths.items():
        method = UNet({"device": args.device, "channels": channels, "batch_size": args.batch})
        torch.manual_seed(0)
        model = method.build().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        spec = Spectrogram(1024, 256, device)
        batch = (rng.standard_normal((args.batch, N)).astype(np.float32) * 0.2,
                 rng.standard_normal((args.batch, 4, N)).astype(np.float32) * 0.05,
                 np.tile(f0[None], (args.batch, 1, 1)).astype(np.float32))

        def train_step():
            model.train()
            loss = method._loss(model, method._to_batch(batch, device), spec)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t_step = timed(train_step, args.repeats, sync)
        method.model = model.eval()
        t_sep = timed(lambda: method.separate(mixture, SAMPLE_RATE, f0), args.repeats, sync)
        results[label] = (t_step, t_sep)
        print(f"{label:12s} channels {channels}: {count_parameters(model) / 1e6:5.2f} M parameters, "
              f"train step {t_step:7.3f} s, separation {1000 * t_sep:8.1f} ms per 4-s SATB excerpt "
              f"({t_sep / t_oracle:5.1f} x oracle, {4.0 / t_sep:6.1f} x real time)")
    (p_step, p_sep), (d_step, d_sep) = results["paper"], results["cpu-default"]
    print(f"paper / cpu-default: train step {p_step / d_step:.1f} x, separation {p_sep / d_sep:.1f} x")

    if args.data:
        from choirbench.data_prep.prepared import ExcerptSampler
        sampler = ExcerptSampler(args.data, "train", seed=0)
        t_data = timed(lambda: sampler.batch(args.batch), args.repeats, lambda: None)
        print(f"sampler: {t_data:.3f} s per batch of {args.batch} (read + mix, {args.data})")
        for label, (t_step, _) in results.items():
            print(f"{label:12s} training steps in 4 minutes (step + sampler): {240 / (t_step + t_data):6.0f}")


if __name__ == "__main__":
    main()
