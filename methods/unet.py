"""`unet`: the F0-conditioned U-Net with FiLM of Petermann, Chandna, Cuesta, Bonada & Gómez (ISMIR 2020).

The purely data-driven, supervised baseline. One network serves every voice:
it sees the max-normalised mixture magnitude and the target voice's F0 and
predicts a soft mask for that voice. The F0 enters as a Gaussian-blurred
one-hot over 361 bins (20 cents from 32.7 Hz), goes through three Conv1d
layers and a linear layer that give a FiLM scale and shift per frequency bin
and frame, applied to the input spectrogram. The U-Net itself follows Jansson
et al. (2017): strided 5x5 convolutions with batch norm and leaky ReLU (slope
0.2) down, transposed convolutions with ReLU (dropout on the first three) up,
skip connections, a sigmoid mask that multiplies the input magnitude.

``leaky_slope`` 1 reproduces the U-Net behind Schulze-Forster et al.'s numbers
(config entry ``unet-ref``): the authors' code (schufo/umss, models.py,
``BaselineUnet``) builds its encoder activations as ``LeakyReLU(True)``, i.e.
negative slope 1, so its encoder is affine (convolutions and batch norm only).

At test time the network runs once per voice (one batch), and the estimates
``S_j`` become ratio masks ``S_j / sum_k S_k`` on the complex mixture STFT, so
the voices always add up to the mixture.

Training uses the shared loop of :mod:`choirbench.training` (checkpoint,
resume, logs, early stopping); the random target voice of each example is drawn
from torch's RNG, which that loop checkpoints, so a resumed run is exact.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.registry import Method, register
from choirbench.checkpoints import load_weights
from choirbench.training import (RUNTIME_PARAMS, TRAIN_DEFAULTS, TRAIN_LIMITS, TrainSettings, resolve_device,
                                         train)
from choirbench.params import NON_NEGATIVE, POSITIVE, Limit

log = logging.getLogger(__name__)

ARCH_KEYS = ("n_fft", "hop", "channels", "f0_bins", "f0_fmin", "f0_cents_per_bin", "f0_sigma",
             "cond_channels", "cond_kernel", "dropout", "leaky_slope")
"""The hyperparameters that define the network (``load`` requires the checkpoint's to equal the entry's)."""

PAPER_CHANNELS = [16, 32, 64, 128, 256, 512]
"""The paper's encoder widths (about 10 M parameters with the conditioning)."""


# ----------------------------------------------------------------------------- conditioning

def f0_activation(f0: torch.Tensor, n_bins: int = 361, fmin: float = 32.7, cents_per_bin: float = 20.0,
                  sigma: float = 1.0) -> torch.Tensor:
    """F0 [..., T] in Hz -> [..., n_bins, T]: one-hot on the nearest pitch bin, Gaussian-blurred.

    Unvoiced frames (F0 <= 0) give an all-zero column; F0 outside the range
    lands on the first or last bin (a choir voice outside 32.7-2093 Hz is an
    annotation error, and the network should still see that the voice sings).
    """
    voiced = f0 > 0
    cents = 1200.0 * torch.log2(torch.where(voiced, f0, torch.ones_like(f0)) / fmin)
    centre = torch.round(cents / cents_per_bin).clamp(0, n_bins - 1)
    bins = torch.arange(n_bins, dtype=f0.dtype, device=f0.device)
    # distances beyond 8 sigma are cut to exactly zero (no slow denormal exponentials)
    distance = ((bins[:, None] - centre[..., None, :]).abs() / sigma).clamp_max(8.0)
    act = torch.exp(-0.5 * distance ** 2) * (distance < 8.0)
    return act * voiced[..., None, :].to(f0.dtype)


def align_f0(f0: torch.Tensor, n_frames: int, hop: int) -> torch.Tensor:
    """F0 on the hop-256 grid [..., T0] -> the STFT's frame grid [..., n_frames] (nearest frame, edge held)."""
    index = torch.round(torch.arange(n_frames, device=f0.device) * (hop / HOP)).long()
    return f0[..., index.clamp(0, f0.shape[-1] - 1)]


class FiLMGenerator(nn.Module):
    """F0 activation [B, n_bins, T] -> FiLM (gamma, beta), each [B, F, T]."""

    def __init__(self, f0_bins: int, n_freq: int, channels: list[int], kernel: int):
        super().__init__()
        layers, width = [], f0_bins
        for out in channels:
            # 'same' padding, asymmetric for an even kernel (the paper's is 10)
            layers += [nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0), nn.Conv1d(width, out, kernel),
                       nn.BatchNorm1d(out), nn.ReLU()]
            width = out
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(width, 2 * n_freq)
        self.n_freq = n_freq

    def forward(self, activation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.convs(activation).transpose(1, 2)          # [B, T, C]
        film = self.linear(hidden).transpose(1, 2)                # [B, 2F, T]
        # gamma = 1 + output: an untrained network passes the input through instead of erasing it
        return 1.0 + film[:, : self.n_freq], film[:, self.n_freq:]


# ----------------------------------------------------------------------------- the network

class ConditionedUNet(nn.Module):
    """Mixture magnitude [B, F, T] + F0 [B, T] (on the STFT grid) -> mask [B, F, T] in [0, 1].

    The network works on the F - 1 lowest bins (512 for n_fft 1024, a power of
    two); the Nyquist bin, which holds no voice energy, reuses the mask of the
    bin below. Frequency and time are zero-padded to a multiple of
    2^depth and the mask is cropped back, so any excerpt length works. ``hop``
    is not used by the network; it is accepted so that the stored hyperparameters
    rebuild it as one dict.
    """

    def __init__(self, n_fft: int = 1024, hop: int = 256, channels: list[int] = PAPER_CHANNELS,
                 f0_bins: int = 361, f0_fmin: float = 32.7, f0_cents_per_bin: float = 20.0,
                 f0_sigma: float = 1.0, cond_channels: list[int] = (16, 64, 256), cond_kernel: int = 10,
                 dropout: float = 0.5, leaky_slope: float = 0.2):
        super().__init__()
        if not channels:
            raise ChoirbenchError("methods.unet.params.channels must list at least one width")
        self.n_net = n_fft // 2                      # bins the U-Net sees (Nyquist dropped)
        self.depth = len(channels)
        self.f0_args = dict(n_bins=f0_bins, fmin=f0_fmin, cents_per_bin=f0_cents_per_bin, sigma=f0_sigma)
        self.film = FiLMGenerator(f0_bins, self.n_net, list(cond_channels), cond_kernel)
        self.down = nn.ModuleList()
        width = 1
        for out in channels:
            self.down.append(nn.Sequential(nn.Conv2d(width, out, 5, stride=2, padding=2), nn.BatchNorm2d(out),
                                           nn.LeakyReLU(float(leaky_slope))))
            width = out
        self.up = nn.ModuleList()
        outs = list(reversed(channels[:-1])) + [1]
        for i, out in enumerate(outs):
            deconv = nn.ConvTranspose2d(width if i == 0 else 2 * width, out, 5, stride=2, padding=2,
                                        output_padding=1)
            if i == len(outs) - 1:
                self.up.append(deconv)               # the mask layer: sigmoid follows in forward
            else:
                block = [deconv, nn.BatchNorm2d(out), nn.ReLU()]
                if i < 3 and dropout > 0:
                    block.append(nn.Dropout(dropout))
                self.up.append(nn.Sequential(*block))
            width = out

    def forward(self, magnitude: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        n_freq, n_frames = magnitude.shape[-2:]
        gamma, beta = self.film(f0_activation(f0, **self.f0_args))
        x = gamma * magnitude[:, : self.n_net] + beta
        step = 2 ** self.depth
        pad_f, pad_t = -self.n_net % step, -n_frames % step
        x = nn.functional.pad(x, (0, pad_t, 0, pad_f))[:, None]
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()                                  # the bottleneck is not a skip
        for i, block in enumerate(self.up):
            if i > 0:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x)
        mask = torch.sigmoid(x[:, 0, : self.n_net, :n_frames])
        if n_freq > self.n_net:                      # Nyquist bin: same mask as the bin below
            mask = torch.cat([mask, mask[:, -1:].expand(-1, n_freq - self.n_net, -1)], dim=1)
        return mask


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- spectrograms

class Spectrogram:
    """Torch STFT pair (centred Hann); the inverse is exact, so masks summing to one return the mixture."""

    def __init__(self, n_fft: int, hop: int, device: torch.device):
        self.n_fft, self.hop = n_fft, hop
        self.window = torch.hann_window(n_fft, device=device)

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(audio, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True, length=length)


def normalised_magnitudes(spec: Spectrogram, mixture: torch.Tensor, target: torch.Tensor | None = None):
    """|STFT| of mixture (and target), both divided by the mixture's maximum magnitude (per example)."""
    mix = spec(mixture).abs()
    scale = mix.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
    return mix / scale, (None if target is None else spec(target).abs() / scale)


# ----------------------------------------------------------------------------- the method

@register
class UNet(Method):
    """F0-conditioned U-Net (FiLM), supervised on isolated voices; see the module docstring."""

    name = "unet"
    trainable = True
    # long recordings: 30-s blocks, 2-s cross-fades (the receptive field spans about +-2 s of frames)
    block_s = 30.0
    overlap_s = 2.0
    # CPU default: a quarter of the paper's widths (1.1 M parameters instead of 10.3 M) and 300 steps
    # of batch 16: about 0.64 s per step on one core, so one training run fits in about 4 minutes.
    # The paper's size: channels PAPER_CHANNELS (config/paper.yaml), trained much longer.
    defaults = {
        "device": "auto",
        "n_fft": 1024,
        "hop": 256,
        "channels": [4, 8, 16, 32, 64, 128],
        "f0_bins": 361,
        "f0_fmin": 32.7,
        "f0_cents_per_bin": 20.0,
        "f0_sigma": 1.0,
        "cond_channels": [16, 64, 256],
        "cond_kernel": 10,
        "dropout": 0.5,
        "leaky_slope": 0.2,
        "max_valid_examples": 16,  # validation excerpts (x every voice) used for early stopping
        **TRAIN_DEFAULTS,
        "lr": 1e-3,
        "batch_size": 16,
        "steps": 300,
        "valid_every": 50,
        "patience": 10,
        "checkpoint_every": 50,
    }
    limits = {**TRAIN_LIMITS, "n_fft": POSITIVE, "hop": POSITIVE, "dropout": Limit(minimum=0, below=1),
              "max_valid_examples": NON_NEGATIVE}

    smoke_params = {"channels": [2, 4, 4, 8, 8, 8], "cond_channels": [4, 4, 4], "steps": 2, "batch_size": 2,
                    "valid_every": 1, "checkpoint_every": 1, "max_valid_examples": 1}

    # every other knob shapes the trained weights (the masks are the network's own output)
    inference_params = frozenset({"device"}) | RUNTIME_PARAMS

    def __init__(self, params: dict | None = None, *, device: str | None = None):
        super().__init__(params, device=device or "cpu")
        self._device_name = device or self.params["device"]   # an explicit device wins over the config
        self.model: ConditionedUNet | None = None
        if not 0 < self.params["hop"] <= self.params["n_fft"] // 2:
            raise ChoirbenchError("methods.unet.params.hop must be between 1 and n_fft / 2 "
                                  f"(got hop {self.params['hop']}, n_fft {self.params['n_fft']}): "
                                  "the masks are inverted by overlap-add")
        channels = self.params["channels"]
        if not channels or not all(isinstance(c, int) and c > 0 for c in channels):
            raise ChoirbenchError(f"methods.unet.params.channels must be a list of positive widths, got {channels!r}")
        size = self.params["micro_batch"]
        if 0 < size < self.params["batch_size"]:
            # BatchNorm normalises with the statistics of the batch it sees: micro-batches would train another model
            raise ChoirbenchError(f"methods.unet.params.micro_batch must be 0 (the whole batch), got {size}: the "
                                  "U-Net's batch normalisation takes its statistics over the batch, so "
                                  "micro-batches would not give the whole batch's gradient")
        leak = self.params["leaky_slope"]
        if isinstance(leak, bool) or not isinstance(leak, (int, float)) or not 0 <= leak <= 1:
            # the published port passes True here (LeakyReLU(True)), which makes the encoder linear by
            # accident; slope 1 must be asked for as a number (the `unet-ref` entry does)
            raise ChoirbenchError(f"methods.unet.params.leaky_slope must be a number in [0, 1], got {leak!r}")

    @property
    def uses_isolated_voices(self) -> bool:
        return True

    # -- helpers

    def _device(self) -> torch.device:
        """The constructor's device when given, else ``params.device`` (``auto``: CUDA when present)."""
        return resolve_device(self._device_name)

    def _arch(self) -> dict:
        return {k: self.params[k] for k in ARCH_KEYS}

    def _to_batch(self, batch, device: torch.device):
        """Sampler batch -> (mixture [B, N], target voice [B, N], target F0 [B, T]) on the device.

        Training batches get a random target voice per example from torch's RNG
        (checkpointed by the training loop); validation batches carry theirs.
        """
        mixtures, voices, f0 = batch[:3]
        if voices is None:
            raise ChoirbenchError("methods.unet is supervised: the training sampler must provide isolated voices")
        n_batch, n_voices = voices.shape[:2]
        targets = torch.as_tensor(batch[3]) if len(batch) > 3 else torch.randint(n_voices, (n_batch,))
        rows = torch.arange(n_batch)
        as_float = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        voices, f0 = as_float(voices), as_float(f0)
        return as_float(mixtures).to(device), voices[rows, targets].to(device), f0[rows, targets].to(device)

    def _loss(self, model: ConditionedUNet, batch, spec: Spectrogram) -> torch.Tensor:
        mixture, target, f0 = batch
        mix_mag, target_mag = normalised_magnitudes(spec, mixture, target)
        mask = model(mix_mag, align_f0(f0, mix_mag.shape[-1], spec.hop))
        return (mask * mix_mag - target_mag).abs().mean()

    def _valid_batches(self, valid) -> list:
        """Every voice of the first ``max_valid_examples`` validation excerpts, in fixed batches."""
        rows = [(e.mixture, e.voices[j], e.f0[j]) for e in list(valid or [])[: self.params["max_valid_examples"]]
                for j in range(len(e.voices))]
        size = self.params["batch_size"]
        batches = []
        for start in range(0, len(rows), size):
            chunk = rows[start: start + size]
            batches.append((np.stack([r[0] for r in chunk]).astype(np.float32),
                            np.stack([r[1] for r in chunk])[:, None].astype(np.float32),
                            np.stack([r[2] for r in chunk])[:, None].astype(np.float32),
                            np.zeros(len(chunk), dtype=np.int64)))
        return batches

    # -- contract

    def build(self, seed: int | None = None) -> ConditionedUNet:
        if seed is not None:
            torch.manual_seed(seed)
        return ConditionedUNet(**self._arch())

    def fit(self, train_sampler, valid, out_dir: Path, seed: int, provenance: dict | None = None) -> Path:
        device = self._device()
        model = self.build(seed).to(device)
        log.info("unet: %d parameters, channels %s, device %s", count_parameters(model),
                 self.params["channels"], device)
        spec = Spectrogram(self.params["n_fft"], self.params["hop"], device)
        path = train(model, lambda m, b: self._loss(m, b, spec), train_sampler, self._valid_batches(valid),
                     Path(out_dir), TrainSettings.from_params(self.params), seed, method=self,
                     provenance=provenance, to_batch=lambda b: self._to_batch(b, device))
        self.load(path)
        return path

    def load_state(self, state: dict, path: Path) -> None:
        """The network from a checked checkpoint: its ``ARCH_KEYS`` equal this entry's (Method.load)."""
        model = ConditionedUNet(**self._arch())
        load_weights(model, state["model"], path)
        self.model = model.to(self._device()).eval()

    @torch.no_grad()
    def masks(self, mixture: np.ndarray, f0: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, Spectrogram]:
        """(ratio masks [J, F, T], complex mixture STFT [F, T], the STFT used); masks sum to one."""
        masks, mix_spec, spec = self._batch_masks(np.asarray(mixture, dtype=np.float32)[None],
                                                  np.asarray(f0, dtype=np.float32)[None])
        return masks[0], mix_spec[0], spec

    @torch.no_grad()
    def _batch_masks(self, mixtures: np.ndarray, f0s: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, Spectrogram]:
        """(masks [B, J, F, T], mixture STFTs [B, F, T], the STFT) of B excerpts: all B x J through the network at once.

        Each excerpt's magnitudes are divided by its own maximum (as in training), so an excerpt gets
        the same masks alone or in a batch.
        """
        if self.model is None:
            raise RuntimeError("unet: call fit() or load() before separate()")
        device = next(self.model.parameters()).device
        spec = Spectrogram(self.params["n_fft"], self.params["hop"], device)
        x = torch.as_tensor(np.asarray(mixtures, dtype=np.float32), device=device)
        mix_spec = spec(x)                                                   # [B, F, T]
        mix_mag = mix_spec.abs()
        norm = mix_mag / mix_mag.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
        B, J = f0s.shape[:2]
        f0_t = align_f0(torch.as_tensor(np.asarray(f0s, dtype=np.float32), device=device), mix_mag.shape[-1],
                        spec.hop)                                            # [B, J, T]
        stacked = norm[:, None].expand(-1, J, -1, -1).reshape(B * J, *norm.shape[-2:])
        estimates = self.model(stacked, f0_t.reshape(B * J, -1)).reshape(B, J, *norm.shape[-2:]) * norm[:, None]
        total = estimates.sum(dim=1, keepdim=True)
        masks = torch.where(total > 0, estimates / total.clamp_min(1e-30), torch.full_like(estimates, 1.0 / J))
        return masks, mix_spec, spec

    def separate(self, mixture, sr, f0, notes=None, **kwargs) -> np.ndarray:
        mixture = np.asarray(mixture, dtype=np.float32)
        return self.separate_batch(mixture[None], sr, np.asarray(f0, dtype=np.float32)[None])[0][0]

    def separate_batch(self, mixtures, sr, f0s, notes=None, *, parameters: bool = True, **kwargs
                       ) -> tuple[np.ndarray, list[None]]:
        """Voices [B, J, N] of B excerpts of equal length, the network run once on all B x J; no parameters."""
        if sr != SAMPLE_RATE:
            raise ChoirbenchError(f"unet works at {SAMPLE_RATE} Hz, got {sr} Hz")
        mixtures = np.asarray(mixtures, dtype=np.float32)
        masks, mix_spec, spec = self._batch_masks(mixtures, np.asarray(f0s, dtype=np.float32))
        B, J = masks.shape[:2]
        voices = spec.inverse((masks * mix_spec[:, None]).reshape(B * J, *masks.shape[-2:]), mixtures.shape[-1])
        return voices.reshape(B, J, -1).cpu().numpy().astype(np.float32), [None] * len(mixtures)
