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
import torch.nn.functional as F
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
    lsf_min_gap_hz: float = 0.0
    """Minimum spacing of neighbouring LSFs; 0 = none, as published (``lsf_activation``)."""
    noise_gain_max: float = 1.0
    """Ceiling of the per-frame noise gain (published: ``exp_sigmoid(., max_value=1)``)."""
    slope_corner_hz: float = sf_dsp.SLOPE_CORNER_HZ
    """The fixed source slope is flat below this frequency (published: 200 Hz) ..."""
    slope_db_per_octave: float = sf_dsp.SLOPE_DB_PER_OCTAVE
    """... and falls by this many dB per octave above it (published: 6). Applied by the excitation
    spectra (``sf_dsp.excitation_spectra``); recorded here so that a checkpoint names the signal model."""
    encoder_fft: int = 512
    sample_rate: int = 16000

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_stored(cls, stored: dict) -> "Architecture":
        """The architecture a checkpoint recorded, refusing one that lacks a current field or has an unknown one.

        A field missing from an older checkpoint would otherwise take today's default silently, and the
        weights would be run under a signal model they were not trained with. Raises ValueError naming
        the fields.
        """
        fields = set(cls().to_dict())
        missing, unknown = sorted(fields - set(stored)), sorted(set(stored) - fields)
        if missing or unknown:
            raise ValueError(f"architecture fields missing {missing} / unknown {unknown}: "
                             "the checkpoint was written by another version of the sf model; retrain it")
        return cls(**stored)


def scale_f0(f0: torch.Tensor) -> torch.Tensor:
    """F0 in Hz -> [0, 1] on a log (MIDI-like) scale from 20 Hz to 8 kHz; unvoiced (0) -> 0."""
    lo, hi = math.log2(F0_MIN_HZ), math.log2(F0_MAX_HZ)
    scaled = (torch.log2(f0.clamp_min(F0_MIN_HZ)) - lo) / (hi - lo)
    return torch.where(f0 > 0, scaled.clamp(0, 1), torch.zeros_like(scaled))


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 (from the autocast dtype), or kept in float64: the network also runs in float64,
    for gradient checks at a precision float32 cannot give (e.g. tests/test_micro_batch.py)."""
    return x if x.dtype == torch.float64 else x.float()


class _NormActLinear(torch.autograd.Function):
    """LayerNorm -> LeakyReLU -> Linear (the Linear optional) that keeps only the norm's input for backward.

    Autograd would keep three activations per MLP layer (the norm's input, its
    output and the activation's output); this keeps one and recomputes the
    cheap norm and activation in backward (no matrix product is recomputed).
    Under autocast the matrix products run in the autocast dtype and the norm in
    float32, as autocast itself would do.
    """

    @staticmethod
    def forward(ctx, z, gamma, beta, weight, bias, eps: float, slope: float):
        device = z.device.type
        mm_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else z.dtype
        with torch.autocast(device, enabled=False):
            u, mean, rstd = torch.native_layer_norm(_wide(z), [z.shape[-1]], gamma, beta, eps)
            y = F.leaky_relu(u, slope)
            out = y if weight is None else F.linear(y.to(mm_dtype), weight.to(mm_dtype), bias.to(mm_dtype))
        ctx.save_for_backward(z, mean, rstd, gamma, beta, weight)
        ctx.eps, ctx.slope, ctx.mm_dtype = eps, slope, mm_dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        z, mean, rstd, gamma, beta, weight = ctx.saved_tensors
        zf = _wide(z)
        with torch.autocast(z.device.type, enabled=False):
            u = torch.native_layer_norm(zf, [z.shape[-1]], gamma, beta, ctx.eps)[0]
            grad_w = grad_b = None
            if weight is None:
                grad_y = _wide(grad_out)
            else:
                g = grad_out.to(ctx.mm_dtype).reshape(-1, grad_out.shape[-1])
                y = F.leaky_relu(u, ctx.slope).to(ctx.mm_dtype).reshape(-1, u.shape[-1])
                grad_w = (g.t() @ y).to(weight.dtype)
                grad_b = _wide(g).sum(0)
                grad_y = _wide(g @ weight.to(ctx.mm_dtype)).reshape(u.shape)
            grad_u = torch.ops.aten.leaky_relu_backward(grad_y, u, ctx.slope, False)
            grad_z, grad_gamma, grad_beta = torch.ops.aten.native_layer_norm_backward(
                grad_u, zf, [z.shape[-1]], mean, rstd, gamma, beta, [True, True, True])
        return grad_z.to(z.dtype), grad_gamma, grad_beta, grad_w, grad_b, None, None


class MLP(nn.Sequential):
    """``layers`` x (Linear -> LayerNorm -> LeakyReLU).

    Kept as a plain ``Sequential`` of the standard layers (so checkpoints and
    parameter names are the usual ones); ``forward`` runs each norm and
    activation fused with the Linear after it, see :class:`_NormActLinear`.
    """

    def __init__(self, n_in: int, width: int, layers: int):
        blocks = []
        for i in range(layers):
            blocks += [nn.Linear(n_in if i == 0 else width, width), nn.LayerNorm(width), nn.LeakyReLU()]
        super().__init__(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mods = list(self)
        z = mods[0](x)
        for i in range(0, len(mods), 3):
            norm, act = mods[i + 1], mods[i + 2]
            nxt = mods[i + 3] if i + 3 < len(mods) else None
            z = _NormActLinear.apply(z, norm.weight, norm.bias, None if nxt is None else nxt.weight,
                                     None if nxt is None else nxt.bias, norm.eps, act.negative_slope)
        return z


class ExcerptNorm(nn.Module):
    """Normalisation over a whole excerpt's log-spectrogram with a learned scale and shift per frequency.

    y[b, t, f] = (x[b, t, f] - mean_b) / sqrt(var_b + eps) * scale[f] + shift[f], with mean_b and the
    (biased) variance var_b over all frames and bins of example b: the published encoder's
    ``CustomLayerNorm`` on the [batch, bins, frames, 1] spectrogram (schufo/umss,
    network_components.py; eps 1e-5). Unlike a per-frame layer norm it keeps the loudness envelope
    over time, which the decoder needs for the amplitudes.
    """

    def __init__(self, bins: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(bins))
        self.shift = nn.Parameter(torch.zeros(bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, frames, bins] -> the same shape."""
        var, mean = torch.var_mean(x, dim=(-2, -1), keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.scale + self.shift


class Encoder(nn.Module):
    """Log-magnitude STFT -> excerpt-wide normalisation -> GRUs (residual after the first) -> embedding."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.n_fft = arch.encoder_fft
        bins = self.n_fft // 2 + 1
        self.norm = ExcerptNorm(bins)
        self.grus = nn.ModuleList(nn.GRU(bins if i == 0 else arch.encoder_hidden, arch.encoder_hidden,
                                         batch_first=True) for i in range(arch.encoder_layers))
        self.out = nn.Linear(arch.encoder_hidden, arch.embedding)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, N // 256 + 1, embedding]."""
        spec = torch.stft(mixture, self.n_fft, hop_length=sf_dsp.HOP,
                          window=sf_dsp.hann(self.n_fft, mixture.device, mixture.dtype), center=True,
                          return_complex=True)
        x = self.norm(torch.log(spec.abs().transpose(1, 2) + 1e-6))
        # the GRUs run in float32 even under autocast: torch's CPU GRU in bfloat16 is ~20x slower for
        # one excerpt (separation) and hardly faster for a training batch
        with torch.autocast(mixture.device.type, enabled=False):
            x = _wide(x)
            for i, gru in enumerate(self.grus):
                y, _ = gru(x)
                x = y if i == 0 else x + y
        return self.out(x)


class _SharedInputGRU(torch.autograd.Function):
    """The decoder GRU over the voices, with the mixture-wide half of its input projected once per mixture.

    The GRU input is [pitch_j, shared] where ``shared`` (the embedding MLP's
    output) is the same for all J voices of a mixture. nn.GRU would multiply
    that half by its weights J times; here ``W_shared @ shared`` is computed
    once per mixture and broadcast over the voices, which removes about a
    third of the GRU's arithmetic for J = 4. It is otherwise torch's GRU
    (gate order r, z, n; n = tanh(W_in x + b_in + r (W_hn h + b_hn))), with a
    hand-written backward through time that keeps four gate tensors per step,
    laid out time-major so that every step works on contiguous memory; the
    output is time-major too, [L, B * J, H]. The
    matrix products run in the autocast dtype when autocast is on; the state
    and the gates stay in float32 (float64 for float64 inputs).
    """

    @staticmethod
    def forward(ctx, pitch, shared, w_ih, w_hh, b_ih, b_hh, voices: int):
        out, gates, mm = _SharedInputGRU.run(pitch, shared, w_ih, w_hh, b_ih, b_hh, voices, keep=True)
        ctx.save_for_backward(pitch, shared, w_ih, w_hh, out, gates)
        ctx.voices, ctx.mm = voices, mm
        return out

    @staticmethod
    def run(pitch, shared, w_ih, w_hh, b_ih, b_hh, voices: int, keep: bool
            ) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        """(output [L, B * J, H], gates, matrix-product dtype); ``keep`` False (no backward to come) reuses one
        step's gate buffer instead of keeping L of them, and lays the pitch rows out time-major before
        the input product, whose result is then the time-major input itself (a third of the copy)."""
        device = pitch.device.type
        dt = torch.float64 if pitch.dtype == torch.float64 else torch.float32
        mm = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else dt
        BJ, L, H = pitch.shape[0], pitch.shape[1], w_hh.shape[1]
        with torch.autocast(device, enabled=False):
            if keep:
                projected = pitch.reshape(-1, H).to(mm) @ w_ih[:, :H].to(mm).t()   # a 2-D product is fastest
                gi = pitch.new_empty(L, BJ, 3 * H, dtype=dt).copy_(projected.view(BJ, L, -1).transpose(0, 1))
            else:
                gi = (pitch.transpose(0, 1).reshape(-1, H).to(mm) @ w_ih[:, :H].to(mm).t()).to(dt).view(L, BJ, -1)
            gi.view(L, BJ // voices, voices, 3 * H).add_(
                ((shared.to(mm) @ w_ih[:, H:].to(mm).t()).to(dt) + b_ih).transpose(0, 1)[:, :, None])
            w_hh_t, b_hh = w_hh.to(mm).t().contiguous(), b_hh.to(dt)
            out = gi.new_empty(L, BJ, H)
            gates = gi.new_empty(L if keep else 1, BJ, 4 * H)                # r, z, n, W_hn h + b_hn
            h = gi.new_zeros(BJ, H)
            for t in range(L):
                gh = torch.addmm(b_hh, h, w_hh_t) if mm == dt else torch.add(b_hh, h.to(mm) @ w_hh_t)
                g = gates[t if keep else 0]
                torch.add(gi[t, :, :2 * H], gh[:, :2 * H], out=g[:, :2 * H]).sigmoid_()
                if keep:
                    g[:, 3 * H:].copy_(gh[:, 2 * H:])
                n = torch.addcmul(gi[t, :, 2 * H:], g[:, :H], gh[:, 2 * H:], out=g[:, 2 * H:3 * H]).tanh_()
                h = torch.lerp(n, h, g[:, H:2 * H], out=out[t])               # (1 - z) n + z h
        return out, gates, mm

    @staticmethod
    def backward(ctx, grad_out):
        pitch, shared, w_ih, w_hh, out, gates = ctx.saved_tensors
        mm, voices = ctx.mm, ctx.voices
        L, BJ, H = out.shape
        dt = out.dtype
        with torch.autocast(pitch.device.type, enabled=False):
            grad_out = grad_out.to(dt)
            w_hh = w_hh.to(mm)
            d = torch.empty_like(gates)             # d pre-activations: r, z, (W_hn h + b_hn), (W_in x + b_in)
            dh = torch.zeros_like(out[0])
            for t in range(L - 1, -1, -1):
                dh = dh + grad_out[t]
                r, z, n, ghn = gates[t].split(H, dim=1)
                h_prev = out[t - 1] if t > 0 else torch.zeros_like(dh)
                dn = torch.mul(dh * (1 - z), 1 - n * n, out=d[t, :, 3 * H:])
                torch.mul(dn, r, out=d[t, :, 2 * H:3 * H])
                torch.mul(dn * ghn, r * (1 - r), out=d[t, :, :H])
                torch.mul(dh * (h_prev - n), z * (1 - z), out=d[t, :, H:2 * H])
                dh = torch.addmm(dh * z, d[t, :, :3 * H], w_hh) if mm == dt else \
                    torch.add(dh * z, d[t, :, :3 * H].to(mm) @ w_hh)
            d_gh = d[..., :3 * H]
            # step t multiplies W_hh by h_{t-1}; at t = 0 that is the zero initial state
            grad_w_hh = (d_gh[1:].reshape(-1, 3 * H).to(mm).t() @ out[:-1].reshape(-1, H).to(mm)).to(dt)
            grad_b_hh = d_gh.reshape(-1, 3 * H).sum(0)
            d_gi = torch.cat([d[..., :2 * H], d[..., 3 * H:]], dim=-1)          # [L, BJ, 3H]
            d_gi_shared = d_gi.view(L, BJ // voices, voices, 3 * H).sum(2).transpose(0, 1).reshape(-1, 3 * H)
            d_gi = d_gi.transpose(0, 1).reshape(-1, 3 * H).to(mm)
            grad_b_ih = d_gi_shared.sum(0)
            w_pitch, w_shared = w_ih[:, :H].to(mm), w_ih[:, H:].to(mm)
            grad_w_ih = torch.cat([(d_gi.t() @ pitch.reshape(-1, H).to(mm)).to(dt),
                                   (d_gi_shared.to(mm).t() @ shared.reshape(-1, H).to(mm)).to(dt)], dim=1)
            grad_pitch = (d_gi @ w_pitch).view_as(pitch).to(pitch.dtype)
            grad_shared = (d_gi_shared.to(mm) @ w_shared).view_as(shared).to(shared.dtype)
        return grad_pitch, grad_shared, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, None


class Decoder(nn.Module):
    """Per voice: MLP(F0) and MLP(embedding) -> GRU -> MLP -> synthesis controls."""

    def __init__(self, arch: Architecture):
        super().__init__()
        width = arch.decoder_hidden
        self.f0_mlp = MLP(1, width, arch.mlp_layers)
        self.emb_mlp = MLP(arch.embedding, width, arch.mlp_layers)
        self.gru = nn.GRU(2 * width, width, batch_first=True)
        self.out_mlp = MLP(width, width, arch.mlp_layers)
        self.frame_head = nn.Linear(width, 2 + arch.filter_order + 1)
        self.band_head = nn.Linear(width, arch.noise_bands)
        self.noise_gain_max = arch.noise_gain_max

    def forward(self, embedding: torch.Tensor, f0: torch.Tensor) -> dict[str, torch.Tensor]:
        """embedding [B, L, E], f0 [B, J, L] Hz -> controls per voice ([B, J, L] ..., bands [B, J, n_bands]).

        The embedding MLP, and the GRU's projection of its output, run once per
        mixture, not once per voice: their input is shared, so computing them J
        times would only cost time. ``self.gru`` holds the GRU's weights (input
        [pitch, shared]) in torch's layout; :class:`_SharedInputGRU` runs it.
        """
        B, J, L = f0.shape
        shared = self.emb_mlp(embedding)                                    # [B, L, H]
        g = self.gru
        weights = (g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (f0, embedding, *self.parameters())):
            pitch = self.f0_mlp(scale_f0(f0).reshape(B * J, L, 1))          # [B * J, L, H]
            hidden = _SharedInputGRU.apply(pitch, shared, *weights, J)    # [L, B * J, H], time-major
        else:  # separation: nothing kept for a backward; the per-frame MLP writes time-major rows straight away
            pitch = self.f0_mlp(scale_f0(f0).reshape(B * J, L, 1).transpose(0, 1)).transpose(0, 1)
            hidden = _SharedInputGRU.run(pitch, shared, *weights, J, keep=False)[0]
        frames = _wide(self.frame_head(self.out_mlp(hidden)))              # per frame: layout is free
        frames = frames.transpose(0, 1).reshape(B, J, L, -1)
        bands = _wide(self.band_head(hidden[-1])).reshape(B, J, -1)
        return {"amplitude": sf_dsp.exp_sigmoid(frames[..., 0]),
                "noise_gain": sf_dsp.exp_sigmoid(frames[..., 1], max_value=self.noise_gain_max),
                "lsf_gaps": sf_dsp.exp_sigmoid(frames[..., 2:]),
                # the published noise synthesiser scales the band logits by 2.5 (VoiceUnvoicedNoise2)
                "noise_bands": sf_dsp.exp_sigmoid(2.5 * bands)}


class SourceFilterNet(nn.Module):
    """Encoder + decoder + the fixed synthesiser; ``forward`` gives the synthesised voices."""

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
        """The synthesised voices [B, J, N]; see :func:`sf_dsp.voice_signals`."""
        return self.synthesize(self.controls(mixture, f0, autocast_dtype), harm, noise, mixture.shape[-1])

    @staticmethod
    def synthesize(controls: dict[str, torch.Tensor], harm: torch.Tensor, noise: torch.Tensor,
                   n_samples: int) -> torch.Tensor:
        """The voices [B, J, N] from the controls and the excitation spectra of :func:`sf_dsp.excitation_spectra`."""
        c = controls
        band = sf_dsp.band_response(c["noise_bands"], harm.shape[-1])
        return sf_dsp.voice_signals(c["lsf"], c["amplitude"], c["noise_gain"], band, harm, noise, n_samples)
