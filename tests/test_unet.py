"""The F0-conditioned U-Net (`unet`): shapes, masks, conditioning, overfitting, exact resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.prepared import ExcerptSampler, load_excerpt
from choirbench.registry import get
from choirbench.methods.bounds import OracleBound
from choirbench.methods.unet import (PAPER_CHANNELS, ConditionedUNet, Spectrogram, UNet, align_f0, count_parameters,
                                     f0_activation, normalised_magnitudes)
from conftest import Killed, KillableSampler

TINY = {"device": "cpu", "channels": [4, 8, 8], "cond_channels": [4, 8, 8], "f0_bins": 361}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets run fastest on one thread, and the test machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_method(**params) -> UNet:
    return UNet({**TINY, **params})


def random_f0(J: int, T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f0 = rng.uniform(100, 800, size=(J, 1)) * np.ones((J, T))
    f0[:, : T // 5] = 0.0  # some unvoiced frames
    return f0


def untrained(seed: int = 0, **params) -> UNet:
    method = tiny_method(**params)
    method.model = method.build(seed).eval()
    return method


def test_registered_and_supervised():
    method = get("unet")()
    assert method.trainable and method.uses_isolated_voices
    with pytest.raises(ChoirbenchError, match="nope"):
        get("unet")({"nope": 1})


def test_paper_width_has_about_ten_million_parameters():
    n = count_parameters(ConditionedUNet(channels=PAPER_CHANNELS))
    assert 9e6 < n < 11.5e6


def test_encoder_is_leaky_with_slope_0_2_and_rejects_a_boolean_slope():
    net = ConditionedUNet(channels=[4, 8])
    slopes = [m.negative_slope for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [0.2, 0.2]
    for bad in (True, 1.5, -0.1, "1"):
        with pytest.raises(ChoirbenchError, match="leaky_slope"):
            UNet({"leaky_slope": bad})
    # the encoder is non-linear: a negated input does not give a negated first-layer output
    block = net.down[0].eval()
    x = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(block(-x), -block(x))


def encoder(net: ConditionedUNet):
    """The U-Net's encoder: its strided convolution blocks (conv, batch norm, leaky ReLU) in sequence."""
    return torch.nn.Sequential(*net.down)


@pytest.mark.parametrize("config", ["config/config.yaml", "config/paper.yaml"])
def test_unet_ref_builds_with_slope_one_and_its_encoder_is_affine(config):
    """unet-ref as configured: encoder slope exactly 1. Tested property: in eval mode (batch norm on
    its running statistics, made non-trivial here) the six encoder blocks compose to an affine map
    f(x) = M x + c, so f(a x + b y) = a f(x) + b f(y) + (1 - a - b) f(0) for random x, y, a, b
    (float64, up to rounding); with biases, batch-norm shifts and running means zeroed, f is linear:
    f(a x + b y) = a f(x) + b f(y). The Petermann-faithful default (slope 0.2) fails both."""
    import yaml
    from pathlib import Path

    entry = yaml.safe_load((Path(__file__).resolve().parents[1] / config).read_text())["methods"]["unet-ref"]
    assert entry["model"] == "unet"
    method = UNet({**entry.get("params", {}), "channels": [2, 4, 4, 8, 8, 8], "device": "cpu"})
    torch.manual_seed(0)
    net = method.build(0).double().eval()
    slopes = [m.negative_slope for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [1.0] * 6
    reference = ConditionedUNet(channels=[2, 4, 4, 8, 8, 8]).double().eval()
    for model in (net, reference):
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            torch.nn.init.normal_(bn.weight)
            torch.nn.init.normal_(bn.bias)
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.randn(2, 1, 64, 64, generator=gen, dtype=torch.float64) for _ in range(2))
    a, b = 0.7, -1.9

    def affine_gap(f):
        with torch.no_grad():
            lhs = f(a * x + b * y)
            rhs = a * f(x) + b * f(y) + (1 - a - b) * f(torch.zeros_like(x))
        return ((lhs - rhs).abs().max() / lhs.abs().max()).item()

    assert affine_gap(encoder(net)) < 1e-12
    assert affine_gap(reference.down[0]) > 0.05 and affine_gap(encoder(reference)) > 1e-6
    with torch.no_grad():
        for m in net.down.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.zero_()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.zero_()
                m.running_mean.zero_()
        f = encoder(net)
        assert torch.allclose(f(a * x + b * y), a * f(x) + b * f(y), rtol=0, atol=1e-12 * f(x).abs().max())
        assert f(torch.zeros_like(x)).abs().max() == 0


def test_f0_activation_bins_and_unvoiced():
    act = f0_activation(torch.tensor([[32.7, 65.4, 0.0, 2093.0 * 4]]))   # [1, 361, 4]
    assert act.shape == (1, 361, 4)
    assert act[0, :, 0].argmax() == 0 and act[0, :, 1].argmax() == 60      # one octave = 60 bins of 20 cents
    assert act[0, :, 2].abs().sum() == 0                                   # unvoiced: no activation
    assert act[0, :, 3].argmax() == 360                                    # out of range: last bin
    assert act[0, 59, 1] == pytest.approx(np.exp(-0.5))                    # blurred with sigma = 1 bin


def test_align_f0_to_stft_frames():
    f0 = torch.arange(10.0)
    assert align_f0(f0, 11, HOP).tolist() == list(range(10)) + [9]         # centred STFT has one frame more
    assert align_f0(f0, 5, 2 * HOP).tolist() == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("n", [SAMPLE_RATE, SAMPLE_RATE + 123])
def test_separate_shape_masks_and_sum(n):
    method = untrained()
    rng = np.random.default_rng(1)
    mixture = (0.3 * rng.standard_normal(n)).astype(np.float32)
    f0 = random_f0(4, n // HOP)
    voices = method.separate(mixture, SAMPLE_RATE, f0)
    assert voices.shape == (4, n) and voices.dtype == np.float32
    np.testing.assert_allclose(voices.sum(0), mixture, atol=1e-5)         # ratio masks sum to one
    masks, _, _ = method.masks(mixture, f0)
    assert masks.min() >= 0 and masks.max() <= 1
    np.testing.assert_allclose(masks.sum(0).numpy(), 1.0, atol=1e-5)
    raw = method.model(torch.rand(2, 513, 37), torch.full((2, 37), 220.0))  # frames not divisible by 2^depth
    assert raw.shape == (2, 513, 37) and raw.min() >= 0 and raw.max() <= 1


def test_silent_mixture_gives_silence():
    method = untrained()
    voices = method.separate(np.zeros(8000, dtype=np.float32), SAMPLE_RATE, random_f0(3, 8000 // HOP))
    assert voices.shape == (3, 8000) and np.all(voices == 0)


def test_untrained_conditioning_path_is_wired():
    method = untrained(seed=3)
    mag = torch.rand(1, 513, 20)
    a = method.model(mag, torch.full((1, 20), 220.0))
    b = method.model(mag, torch.full((1, 20), 440.0))
    c = method.model(mag, torch.zeros(1, 20))
    assert (a - b).abs().max() > 1e-5 and (a - c).abs().max() > 1e-5


class FixedSampler:
    """Always the same batch, with the target voice fixed (index 3 of the tuple)."""

    def __init__(self, batch):
        self.fixed = batch

    def batch(self, size):
        return self.fixed

    def get_state(self):
        return {}

    def set_state(self, state):
        pass


@pytest.fixture(scope="module")
def overfitted(tiny_dataset, tmp_path_factory):
    """A tiny net trained on one batch: one 1-s SATB mixture with each of its 4 voices as the target.

    The same mixture appears with every target, so the net can only fit the
    batch by using the F0 it is given.
    """
    ex = load_excerpt(tiny_dataset, "song1", ("S", "A", "T", "B"), ("1",) * 4, SAMPLE_RATE, SAMPLE_RATE // 2,
                      with_notes=False)
    batch = (np.repeat(ex.mixture[None], 4, 0), np.repeat(ex.voices[None], 4, 0), np.repeat(ex.f0[None], 4, 0),
             np.arange(4))
    method = tiny_method(n_fft=512, channels=[16, 32, 64], cond_channels=[8, 8, 8], dropout=0.0, lr=5e-3,
                         steps=150, batch_size=4, valid_every=1000, checkpoint_every=1000)
    spec = Spectrogram(512, 256, torch.device("cpu"))
    tensors = method._to_batch(batch, torch.device("cpu"))
    mix_mag, target_mag = normalised_magnitudes(spec, tensors[0], tensors[1])
    floor = float((target_mag - mix_mag).clamp_min(0).mean())   # best loss any mask in [0, 1] can reach

    def loss() -> float:
        with torch.no_grad():
            return float(method._loss(method.model.eval(), tensors, spec))

    method.model = method.build(0)
    before = loss()
    out = tmp_path_factory.mktemp("overfit")
    method.fit(FixedSampler(batch), [], out, seed=0)
    return method, ex, before, loss(), floor, out


def test_a_single_batch_can_be_overfitted(overfitted):
    method, ex, before, after, floor, out = overfitted
    # the floor is where the voices' spectra overlap: a mask in [0, 1] cannot undo interference
    assert after - floor < 0.15 * (before - floor), (before, after, floor)
    rows = (out / "train_log.csv").read_text().splitlines()[1:]
    assert sum(",train," in row for row in rows) == 150


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def test_changing_the_f0_changes_the_output(overfitted):
    method, ex, *_ = overfitted
    right = method.separate(ex.mixture, SAMPLE_RATE, ex.f0)
    swapped = method.separate(ex.mixture, SAMPLE_RATE, ex.f0[[3, 2, 1, 0]])   # S gets B's F0, ...
    assert np.abs(right - swapped).max() > 0.1 * np.abs(right).max()
    # with the right F0 each voice comes out about as well as the ideal ratio mask gets it
    oracle = OracleBound({"n_fft": 512, "power": 1.0}).separate(ex.mixture, SAMPLE_RATE, ex.f0, references=ex.voices)
    score = lambda est: np.mean([sdr(ref, e) for ref, e in zip(ex.voices, est)])  # noqa: E731
    assert score(right) > score(oracle) - 1.0
    assert score(right) > score(swapped) + 4.0
    assert score(right) > score(np.repeat(ex.mixture[None] / 4, 4, 0)) + 3.0


def unet_sampler(root, kill_at=None):
    return KillableSampler(root, kill_at, seed=5, excerpt_s=1.0)


def test_resume_gives_the_same_weights(tiny_dataset, tmp_path):
    params = dict(channels=[4, 8], cond_channels=[4, 4, 4], batch_size=2, valid_every=2, checkpoint_every=2,
                  max_valid_examples=1, lr=1e-2, steps=8)
    valid = [load_excerpt(tiny_dataset, "song4", ("S", "A", "T", "B"), ("1",) * 4, 0, SAMPLE_RATE,
                          with_notes=False)]

    def run(out, sampler, seed=7):
        tiny_method(**params).fit(sampler, valid, out, seed=seed)
        return torch.load(out / "last.pt", weights_only=True), torch.load(out / "model.pt", weights_only=True)

    straight_last, straight_final = run(tmp_path / "straight", unet_sampler(tiny_dataset))
    with pytest.raises(Killed):                                  # killed while computing step 5 ...
        run(tmp_path / "killed", unet_sampler(tiny_dataset, kill_at=5))
    restarted = unet_sampler(tiny_dataset)
    resumed_last, resumed_final = run(tmp_path / "killed", restarted)    # ... and restarted
    assert restarted.batches == 4 and resumed_last["step"] == 8          # from last.pt's step 4
    for key, value in straight_last["model"].items():
        assert torch.equal(value, resumed_last["model"][key]), key
    for key, value in straight_final["model"].items():
        assert torch.equal(value, resumed_final["model"][key]), key
    # and a different seed gives different weights (the comparison can fail)
    other_last, _ = run(tmp_path / "other", unet_sampler(tiny_dataset), seed=8)
    assert any(not torch.equal(v, other_last["model"][k]) for k, v in straight_last["model"].items())


def test_load_rebuilds_the_network_and_refuses_another_architecture(tiny_dataset, tmp_path):
    sampler = ExcerptSampler(tiny_dataset, "train", seed=0, excerpt_s=1.0)
    params = dict(channels=[4, 8], steps=2, batch_size=2, checkpoint_every=1)
    trained = tiny_method(**params)
    path = trained.fit(sampler, [], tmp_path, seed=0)
    fresh = tiny_method(**params)
    fresh.load(path)
    ex = load_excerpt(tiny_dataset, "song5", ("S", "A", "T", "B"), ("2",) * 4, 0, SAMPLE_RATE, with_notes=False)
    np.testing.assert_array_equal(fresh.separate(ex.mixture, SAMPLE_RATE, ex.f0),
                                  trained.separate(ex.mixture, SAMPLE_RATE, ex.f0))
    # the config's (default) widths differ from the checkpoint's: an error naming the key, not a silent swap
    with pytest.raises(ChoirbenchError, match=r"model\.pt: trained with other method params.*channels"):
        UNet({"device": "cpu"}).load(path)
    with pytest.raises(ChoirbenchError, match="not found"):
        fresh.load(tmp_path / "missing.pt")
