"""The network of the source-filter model: a source-agnostic encoder and a decoder shared by the voices.

The encoder sees only the mixture; the decoder runs once per voice (on batch * J
rows) from that voice's F0 and the shared embedding, so the same weights serve
any number of voices J at test time. It predicts frame-rate synthesis controls;
the sound itself is made by :mod:`choirbench.methods.sf_dsp`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from choirbench.methods import sf_dsp

F0_MIN_HZ, F0_MAX_HZ = 20.0, 8000.0


@dataclass
class Architecture:
    """Every size of the network and synthesiser; stored in ``model.pt`` to rebuild the model."""

    encoder_hidden: int = 256
    encoder_layers: int = 3
    embedding: int = 128
    decoder_hidden: int = 512
    mlp_layers: int = 3
    n_harmonics: int = 101
    filter_order: int = 20
    noise_bands: int = 40
    lsf_min_gap_hz: float = 50.0
    encoder_fft: int = 512
    sample_rate: int = 16000

    def to_dict(self) -> dict:
        return asdict(self)


def scale_f0(f0: torch.Tensor) -> torch.Tensor:
    """F0 in Hz -> [0, 1] on a log (MIDI-like) scale from 20 Hz to 8 kHz; unvoiced (0) -> 0."""
    lo, hi = math.log2(F0_MIN_HZ), math.log2(F0_MAX_HZ)
    scaled = (torch.log2(f0.clamp_min(F0_MIN_HZ)) - lo) / (hi - lo)
    return torch.where(f0 > 0, scaled.clamp(0, 1), torch.zeros_like(scaled))


def mlp(n_in: int, width: int, layers: int) -> nn.Sequential:
    """``layers`` x (Linear -> LayerNorm -> LeakyReLU)."""
    blocks = []
    for i in range(layers):
        blocks += [nn.Linear(n_in if i == 0 else width, width), nn.LayerNorm(width), nn.LeakyReLU()]
    return nn.Sequential(*blocks)


class Encoder(nn.Module):
    """Log-magnitude STFT -> per-frequency layer norm -> GRUs (residual after the first) -> embedding."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.n_fft = arch.encoder_fft
        bins = self.n_fft // 2 + 1
        self.norm = nn.LayerNorm(bins)
        self.grus = nn.ModuleList(nn.GRU(bins if i == 0 else arch.encoder_hidden, arch.encoder_hidden,
                                         batch_first=True) for i in range(arch.encoder_layers))
        self.out = nn.Linear(arch.encoder_hidden, arch.embedding)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, N // 256 + 1, embedding]."""
        spec = torch.stft(mixture, self.n_fft, hop_length=sf_dsp.HOP,
                          window=sf_dsp.hann(self.n_fft, mixture.device), center=True, return_complex=True)
        x = self.norm(torch.log(spec.abs().transpose(1, 2) + 1e-6))
        for i, gru in enumerate(self.grus):
            y, _ = gru(x)
            x = y if i == 0 else x + y
        return self.out(x)


class Decoder(nn.Module):
    """Per voice: MLP(F0) and MLP(embedding) -> GRU -> MLP -> synthesis controls."""

    def __init__(self, arch: Architecture):
        super().__init__()
        width = arch.decoder_hidden
        self.f0_mlp = mlp(1, width, arch.mlp_layers)
        self.emb_mlp = mlp(arch.embedding, width, arch.mlp_layers)
        self.gru = nn.GRU(2 * width, width, batch_first=True)
        self.out_mlp = mlp(width, width, arch.mlp_layers)
        self.frame_head = nn.Linear(width, 2 + arch.filter_order + 1)
        self.band_head = nn.Linear(width, arch.noise_bands)

    def forward(self, embedding: torch.Tensor, f0: torch.Tensor) -> dict[str, torch.Tensor]:
        """embedding [B, L, E], f0 [B, J, L] Hz -> controls per voice ([B, J, L] ..., bands [B, J, n_bands]).

        The embedding MLP runs once per mixture, not once per voice: its input is
        shared, so computing it J times would only cost time.
        """
        B, J, L = f0.shape
        shared = self.emb_mlp(embedding)                                    # [B, L, H]
        shared = shared.unsqueeze(1).expand(B, J, L, shared.shape[-1]).reshape(B * J, L, -1)
        pitch = self.f0_mlp(scale_f0(f0).reshape(B * J, L, 1))
        hidden, last = self.gru(torch.cat([pitch, shared], dim=-1))
        frames = self.frame_head(self.out_mlp(hidden)).float().reshape(B, J, L, -1)
        bands = self.band_head(last[-1]).float().reshape(B, J, -1)
        return {"amplitude": sf_dsp.exp_sigmoid(frames[..., 0]),
                "noise_gain": sf_dsp.exp_sigmoid(frames[..., 1]),
                "lsf_gaps": sf_dsp.exp_sigmoid(frames[..., 2:]),
                "noise_bands": sf_dsp.exp_sigmoid(bands)}


class SourceFilterNet(nn.Module):
    """Encoder + decoder + the fixed synthesiser; ``forward`` gives per-voice frame spectra."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.encoder = Encoder(arch)
        self.decoder = Decoder(arch)

    def controls(self, mixture: torch.Tensor, f0: torch.Tensor, autocast_dtype: torch.dtype | None = None
                 ) -> dict[str, torch.Tensor]:
        """Synthesis controls for every voice, with the LSFs (radians) in ``lsf``.

        f0 [B, J, T] is put on the synthesis frame grid (N // 256 + 1 frames).
        ``autocast_dtype`` (e.g. bfloat16) runs the network in mixed precision;
        the synthesiser always runs in float32/float64.
        """
        f0 = sf_dsp.frame_f0(f0, mixture.shape[-1])
        with torch.autocast(mixture.device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = self.decoder(self.encoder(mixture), f0)
        min_gap = 2 * math.pi * self.arch.lsf_min_gap_hz / self.arch.sample_rate
        out["lsf"] = sf_dsp.lsf_from_gaps(out["lsf_gaps"], min_gap)
        out["f0"] = f0
        return out

    def forward(self, mixture: torch.Tensor, f0: torch.Tensor, harm: torch.Tensor, noise: torch.Tensor,
                autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Per-voice frame spectra [B, J, L, bins] (complex64); see :func:`sf_dsp.frame_spectra`."""
        c = self.controls(mixture, f0, autocast_dtype)
        inv_a = sf_dsp.inverse_filter_response(c["lsf"], sf_dsp.N_FFT)
        return sf_dsp.frame_spectra(harm, noise, c["amplitude"], c["noise_gain"], c["noise_bands"], inv_a)
