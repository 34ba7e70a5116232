"""Long recordings (issue 13 item 5): blocks with cross-faded joins, batched separation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.registry import get
from choirbench.harness import crossfade_weights, cut_notes, plan_blocks, separate_blocked
from choirbench.methods.sf import SourceFilter
from choirbench.methods.sf_model import SourceFilterNet
from choirbench.methods.unet import UNet


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(seconds: float, J: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE) + 77  # not on the hop grid: the tail block must still line up
    t = np.arange(n) / SAMPLE_RATE
    f0 = np.stack([np.full(n // HOP, 110.0 * 2 ** (j / 2)) * (1 + 0.01 * np.sin(2 * np.pi * 5 * np.arange(n // HOP) * HOP
                                                                                 / SAMPLE_RATE)) for j in range(J)])
    f0[1, 100:180] = 0.0  # a rest
    x = sum(0.2 * np.sin(2 * np.pi * 110.0 * 2 ** (j / 2) * t) for j in range(J)) + 0.01 * rng.standard_normal(n)
    return (x / np.abs(x).max()).astype(np.float32), f0.astype(np.float32)


def _sf(**params) -> SourceFilter:
    method = SourceFilter({"encoder_hidden": 16, "embedding": 16, "decoder_hidden": 16, "device": "cpu", **params})
    torch.manual_seed(0)
    method.model = SourceFilterNet(method.architecture()).eval()
    return method


def _unet() -> UNet:
    method = UNet({"channels": [2, 4, 4, 8, 8, 8], "cond_channels": [4, 4, 4], "device": "cpu"})
    method.model = method.build(0).eval()
    return method


@pytest.mark.parametrize("n_s, block_s, overlap_s", [(61.3, 10.0, 1.0), (20.0, 4.0, 0.5), (9.0, 4.0, 2.0)])
def test_blocks_on_the_hop_grid_and_weights_sum_to_one(n_s, block_s, overlap_s):
    n = int(n_s * SAMPLE_RATE) + 33
    blocks = plan_blocks(n, block_s, overlap_s)
    assert blocks[0][0] == 0 and blocks[-1][1] == n and len(blocks) > 1
    assert all(a % HOP == 0 for a, _ in blocks)
    assert all(b - a == round(block_s * SAMPLE_RATE / HOP) * HOP for a, b in blocks[:-1])
    for (a0, b0), (a1, _) in zip(blocks, blocks[1:]):
        assert b0 - a1 == round(overlap_s * SAMPLE_RATE / HOP) * HOP  # every join overlaps by the same
    total = np.zeros(n)
    for (a, b), w in zip(blocks, crossfade_weights(blocks)):
        assert w.min() >= 0 and w.max() <= 1
        total[a:b] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_plan_refuses_bad_knobs_and_merges_a_short_tail():
    with pytest.raises(ChoirbenchError, match="--block-s"):
        plan_blocks(10 * SAMPLE_RATE, 4.0, 3.0)
    with pytest.raises(ChoirbenchError, match="overlap"):
        plan_blocks(10 * SAMPLE_RATE, 4.0, 0.0)
    assert plan_blocks(4 * SAMPLE_RATE, 4.0, 0.5) == [(0, 4 * SAMPLE_RATE)]
    overlap = 31 * HOP  # 0.5 s on the frame grid
    n = 2 * (4 * SAMPLE_RATE - overlap) + overlap + 100  # a third block would hold 100 samples beyond the overlap
    blocks = plan_blocks(n, 4.0, 0.5, shortest=2048)
    assert len(blocks) == 2 and blocks[-1][1] == n and blocks[-1][1] - blocks[-1][0] > 4 * SAMPLE_RATE


def test_cut_notes_to_a_block():
    notes = [np.array([[0.5, 1.5, 60], [3.0, 5.0, 62], [9.0, 9.5, 64]]), np.zeros((0, 3))]
    cut = cut_notes(notes, 4.0, 8.0)
    np.testing.assert_allclose(cut[0], [[0.0, 1.0, 62]])
    assert cut[1].shape == (0, 3)


def test_short_input_takes_the_whole_file_path():
    class Spy(get("mixture")):
        calls = []

        def separate(self, mixture, sr, f0, notes=None, **kw):
            self.calls.append(len(mixture))
            return super().separate(mixture, sr, f0, notes)

        def separate_batch(self, *a, **kw):  # pragma: no cover - must not be reached
            raise AssertionError("a short input must not be cut into blocks")

    x, f0 = _inputs(3.0)
    out = separate_blocked(Spy(), x, f0, block_s=4.0, overlap_s=0.5)
    assert Spy.calls == [len(x)] and out.shape == (4, len(x))


def test_mixture_bound_blocked_equals_whole():
    method = get("mixture")()
    x, f0 = _inputs(25.0)
    whole = method.separate(x, SAMPLE_RATE, f0)
    blocked = separate_blocked(method, x, f0, block_s=6.0, overlap_s=1.0, batch_size=3)
    np.testing.assert_allclose(blocked, whole, atol=1e-6)


def test_sf_batch_equals_loop():
    method = _sf()
    rng = np.random.default_rng(1)
    x = np.stack([_inputs(1.0, seed=s)[0] for s in range(3)]) * rng.uniform(0.3, 1, (3, 1)).astype(np.float32)
    f0 = np.stack([_inputs(1.0)[1] * k for k in (1.0, 1.1, 0.9)])
    voices, params = method.separate_batch(x, SAMPLE_RATE, f0)
    for b in range(3):
        alone, p = method.separate_with_parameters(x[b], SAMPLE_RATE, f0[b])
        np.testing.assert_allclose(voices[b], alone, atol=1e-5)
        np.testing.assert_allclose(params[b]["harmonic_amplitude"], p["harmonic_amplitude"], rtol=1e-4, atol=1e-6)
    synth, none = method.separate_batch(x, SAMPLE_RATE, f0, parameters=False, output="synthesis")
    assert none == [None] * 3
    np.testing.assert_allclose(synth[2], method.separate(x[2], SAMPLE_RATE, f0[2], output="synthesis"), atol=1e-5)


def test_unet_batch_equals_loop():
    method = _unet()
    x = np.stack([_inputs(1.0, seed=s)[0] * (s + 1) / 3 for s in range(3)])
    f0 = np.stack([_inputs(1.0)[1] * k for k in (1.0, 1.1, 0.9)])
    voices, params = method.separate_batch(x, SAMPLE_RATE, f0)
    assert params == [None] * 3
    for b in range(3):
        np.testing.assert_allclose(voices[b], method.separate(x[b], SAMPLE_RATE, f0[b]), atol=1e-5)


def test_default_batch_loops_nmf():
    method = get("nmf2")({"iterations": 5} if "iterations" in get("nmf2").defaults else {})
    x = np.stack([_inputs(1.0, seed=s)[0] for s in range(2)])
    f0 = np.stack([_inputs(1.0)[1]] * 2)
    voices, _ = method.separate_batch(x, SAMPLE_RATE, f0)
    np.testing.assert_allclose(voices[1], method.separate(x[1], SAMPLE_RATE, f0[1]), atol=1e-6)


def test_sf_blocks_are_batches_of_excerpts():
    """Each block is separated as the excerpt it is (sf has excerpt-wide context: normalisation, GRUs)."""
    method = _sf()
    x, f0 = _inputs(9.0)
    blocked = separate_blocked(method, x, f0, block_s=4.0, overlap_s=0.5, batch_size=2)
    blocks = plan_blocks(len(x), 4.0, 0.5)
    a, b = blocks[1]
    alone = method.separate(x[a:b], SAMPLE_RATE, f0[:, a // HOP: b // HOP])
    lo, hi = blocks[0][1], blocks[2][0]  # where block 1 alone covers the output (weight 1)
    np.testing.assert_allclose(blocked[:, lo:hi], alone[:, lo - a: hi - a], atol=1e-5)


def _join_error(whole, blocked, blocks):
    """Max |difference| relative to the whole-file output's peak, near the joins and far from them."""
    near = np.zeros(whole.shape[-1], bool)
    for (a, _), (_, b) in zip(blocks[1:], blocks[:-1]):
        near[max(0, a - SAMPLE_RATE): b + SAMPLE_RATE] = True
    diff = np.abs(blocked - whole) / np.abs(whole).max()
    return diff[:, near].max(), diff[:, ~near].max()


def test_unet_blocked_close_to_whole():
    method = _unet()
    x, f0 = _inputs(12.0)
    whole = method.separate(x, SAMPLE_RATE, f0)
    blocked = separate_blocked(method, x, f0, block_s=5.0, overlap_s=1.0)
    near, far = _join_error(whole, blocked, plan_blocks(len(x), 5.0, 1.0))
    assert max(near, far) < 0.05


def _sdr(truth, estimate):
    """SDR (dB) per voice, plain energy ratio (no projection): enough to compare two separations of one input."""
    return 10 * np.log10((truth ** 2).sum(-1) / ((truth - estimate) ** 2).sum(-1).clip(1e-12))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nmf1", "nmf2"])
def test_nmf_blocked_within_tolerance(name):
    """NMFs fit their templates per block, so blocks differ from the whole file; the stated tolerance: the
    blocked separation's SDR against the true voices, near the joins (+-1 s) and overall, is within 1.5 dB
    of whole-file processing's (or better)."""
    rng = np.random.default_rng(3)
    n = 10 * SAMPLE_RATE
    base = [130.8, 196.0, 261.6, 392.0]
    f0 = np.stack([np.full(n // HOP, f) * (1 + 0.012 * np.sin(2 * np.pi * 5.5 * np.arange(n // HOP) * HOP
                                                                    / SAMPLE_RATE + j)) for j, f in enumerate(base)])
    f0[:, (np.arange(n // HOP) // 90) % 4 == 3] *= 2 ** (2 / 12)  # notes change every 1.4 s
    frame_f0 = np.repeat(f0, HOP, axis=1)
    voices = np.stack([sum(0.5 / h * np.sin(2 * np.pi * h * np.cumsum(ff) / SAMPLE_RATE + rng.uniform(0, 6))
                           for h in range(1, 12)) for ff in frame_f0]).astype(np.float32)
    x = voices.sum(0)
    method = get(name)()
    whole = method.separate(x, SAMPLE_RATE, f0.astype(np.float32))
    blocked = separate_blocked(method, x, f0.astype(np.float32), block_s=4.0, overlap_s=1.0)
    blocks = plan_blocks(n, 4.0, 1.0)
    near = np.zeros(n, bool)
    for (a, _), (_, b) in zip(blocks[1:], blocks[:-1]):
        near[max(0, a - SAMPLE_RATE): b + SAMPLE_RATE] = True
    for mask in (near, np.ones(n, bool)):
        sdr_whole, sdr_blocked = _sdr(voices[:, mask], whole[:, mask]), _sdr(voices[:, mask], blocked[:, mask])
        assert sdr_whole.mean() > 3.0  # the NMF does separate these voices at all
        assert sdr_blocked.mean() > sdr_whole.mean() - 1.5, (sdr_whole, sdr_blocked)


def test_cli_separate_in_blocks_equals_whole_file(tmp_path):
    """`choirbench separate --block-s` at 44.1 kHz: the mixture bound in blocks writes the whole-file output."""
    from choirbench.cli import main
    from choirbench.io import read_wav, write_wav
    from choirbench.data_prep.release import resample_audio

    x, f0 = _inputs(13.0, J=2)
    write_wav(tmp_path / "mix.wav", resample_audio(x, SAMPLE_RATE, 44100), 44100)
    with open(tmp_path / "f0.csv", "w") as fh:
        fh.write("time_s,S,B\n")
        for i in range(f0.shape[1]):
            fh.write(f"{i * HOP / SAMPLE_RATE:.3f},{f0[0, i]:.2f},{f0[1, i]:.2f}\n")
    outs = {}
    for label, knobs in (("whole", ["--block-s", "1000"]), ("blocks", ["--block-s", "3", "--overlap-s", "0.5"])):
        assert main(["separate", str(tmp_path / "mix.wav"), "--f0", str(tmp_path / "f0.csv"), "--method", "mixture",
                     "--threads", "1", "--out", str(tmp_path / label), *knobs]) in (0, None)
        outs[label] = read_wav(tmp_path / label / "S.wav", sr=None)
    assert outs["blocks"][1] == 44100 and len(outs["blocks"][0]) == len(outs["whole"][0])
    np.testing.assert_allclose(outs["blocks"][0], outs["whole"][0], atol=1e-4)
    assert main(["separate", str(tmp_path / "mix.wav"), "--f0", str(tmp_path / "f0.csv"), "--method", "mixture",
                 "--out", str(tmp_path / "bad"), "--block-s", "2", "--overlap-s", "1.5"]) == 2


# ----------------------------------------------------------------------------- F0 of a long recording (issue 11)

def _tone_mixture(seconds: float, sr: int = 16_000) -> np.ndarray:
    """Four harmonic voices whose chord changes every 1.5 s (S, A, T, B registers)."""
    t = np.arange(int(seconds * sr)) / sr
    chords = [(392.0, 293.7, 246.9, 98.0), (440.0, 349.2, 261.6, 87.3), (392.0, 329.6, 261.6, 130.8)]
    x = np.zeros_like(t)
    for k in range(int(np.ceil(seconds / 1.5))):
        on = (t >= 1.5 * k) & (t < 1.5 * (k + 1))
        for f in chords[k % 3]:
            x += on * sum(np.sin(2 * np.pi * h * f * t) / h for h in range(1, 9) if h * f < sr / 2)
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def test_f0_command_in_blocks_gives_the_whole_file_f0(tmp_path, monkeypatch):
    """`choirbench f0 --block-s 1.5` on 6 s runs the salience in 4 blocks and writes the F0 of one pass.

    Stated tolerance: the blocked salience equals the whole-file one to < 5e-3
    (tests/test_multif0.py::test_blocks_join_without_seams), so a peak can only move where the
    salience sits at the threshold: at least 99 % of the 16-ms frames agree exactly, and no frame is
    voiced in one and more than 50 cents away in the other.
    """
    import pandas as pd

    from choirbench.cli import main
    from choirbench.data_prep import multif0
    from choirbench.io import write_wav

    wav = tmp_path / "mix.wav"
    write_wav(wav, _tone_mixture(6.0), SAMPLE_RATE)
    calls = []
    cqt = multif0._cqt_frames
    monkeypatch.setattr(multif0, "_cqt_frames", lambda y, first, stop, *a, **k: calls.append((first, stop)) or
                        cqt(y, first, stop, *a, **k))
    assert main(["f0", str(wav), "--voices", "SATB", "--out", str(tmp_path / "whole.csv"), "--block-s", "60",
                 "--threads", "1"]) == 0
    assert len(calls) == 1
    calls.clear()
    assert main(["f0", str(wav), "--voices", "SATB", "--out", str(tmp_path / "blocks.csv"), "--block-s", "1.5",
                 "--threads", "1"]) == 0
    assert len(calls) == 8  # 4 blocks: a pass for the dB reference, a pass for the features
    whole, blocks = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("whole", "blocks"))
    assert list(whole.columns) == list(blocks.columns) == ["time_s", "S", "A", "T", "B"]
    a, b = whole[list("SATB")].to_numpy(), blocks[list("SATB")].to_numpy()
    assert a.shape == b.shape and (a > 0).mean() > 0.8
    assert np.mean(a == b) >= 0.99
    both = (a > 0) & (b > 0)
    assert np.all(np.abs(1200 * np.log2(a[both] / b[both])) <= 50)


def test_frame_chunks_change_no_assignment(monkeypatch):
    """Peak picking and both assigners run over frame chunks: the F0 equals one pass over the map."""
    from choirbench.data_prep import multif0, voice_assignment as va

    rng = np.random.default_rng(3)
    T = 700
    k = np.arange(360)[:, None]
    sal = np.zeros((360, T), np.float32)
    for lo in (60, 110, 150, 200):
        centre = lo + 15 * np.sin(np.arange(T) / (40 + lo)) + rng.normal(0, 1.0, T)
        sal = np.maximum(sal, (0.9 * np.exp(-0.5 * (k - centre[None]) ** 2) * (rng.uniform(size=T) > 0.1)[None]))
    sal = (sal + rng.uniform(0, 0.55, sal.shape) * (rng.uniform(size=sal.shape) > 0.97)).astype(np.float32)
    times = np.arange(T) * 256 / 22050
    smap = va.SalienceMap(times, va.bin_frequencies(), sal)
    cases = [("pitch_sort", "SATB"), ("pitch_sort", "SA"), ("voas", "SATB"), ("voas", "ATB")]
    one_pass = [va.assign_voices(smap, voices, {"assigner": assigner}) for assigner, voices in cases]
    peaks = multif0.peaks(multif0.Salience(times, multif0.hcqt_frequencies(), sal))[1]
    monkeypatch.setattr(va, "FRAME_CHUNK", 100)
    monkeypatch.setattr(va, "VOAS_BATCH", 2)  # 256 frames per VoAS call
    for (assigner, voices), expected in zip(cases, one_pass):
        np.testing.assert_array_equal(va.assign_voices(smap, voices, {"assigner": assigner}), expected)
        assert (expected > 0).mean() > 0.15  # voiced frames exist (VoAS is sparse on this map)
    chunked = multif0.peaks(multif0.Salience(times, multif0.hcqt_frequencies(), sal))[1]
    assert len(chunked) == T and all(np.array_equal(x, y) for x, y in zip(chunked, peaks))
