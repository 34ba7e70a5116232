"""Signal processing of the differentiable source-filter model (Schulze-Forster et al. 2023).

The synthesiser works per 512-sample Hann frame (hop 256, frame ``l`` centred
on sample ``l * 256``, i.e. on F0 frame ``l``). In frame ``l`` a voice is

    Y_l(w) = [ a_l * S(w) H_l(w) + g_l * B(w) N_l(w) ] / A_l(e^{jw})

where ``H_l`` is the spectrum of the Hann-windowed harmonic excitation (101
equal-amplitude harmonics of the given F0, those above Nyquist dropped, then
renormalised), ``S`` the fixed source slope (flat below 200 Hz, -6 dB/octave
above, zero phase), ``N_l`` the spectrum of windowed white noise, ``B`` the
40-band noise filter, ``a_l`` and ``g_l`` the harmonic amplitude and noise gain,
and ``1/A_l`` the all-pole vocal tract built from line spectral frequencies.
Frames are taken back to the time domain and overlap-added; the periodic Hann
window at hop 256 sums to one, so the overlap-add also interpolates amplitude,
gain and filter between frames. ``S`` and ``B`` are linear and time-invariant,
so applying them per windowed frame and overlap-adding equals filtering the whole
signal (as the published code does), as long as nothing wraps around the frame
buffer: both are zero-phase FIR filters no longer than +-``FRAME_DELAY``
samples, and every frame is delayed by ``FRAME_DELAY`` inside its buffer (the
overlap-add takes the delay back out).

Why this form: with F0 given and the harmonic distribution fixed, ``H_l`` and
``N_l`` depend on no learned parameter, so they are computed once per batch
without autograd; the learned parameters enter only as per-frame products on a
513-bin grid. The published implementation ran a 101-oscillator bank at the
sample rate under autograd, which took most of its time and memory.

Filtering a frame by ``1/A`` on an ``n_fft``-point grid equals the time-domain
recursion (``scipy.signal.lfilter(1, A, frame)``) with the impulse-response tail
beyond ``n_fft`` samples folded back (time aliasing); with ``n_fft = 1024``, a
512-sample frame and the 64-sample delay, the tail beyond 448 samples after the
frame's end is what folds, which is about 1e-4 of the peak for poles of radius
<= 0.98 (formant bandwidths >= 100 Hz). See ``tests/test_sf.py``.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

WIN = 512
"""Synthesis frame length (samples)."""
HOP = 256
"""Synthesis hop (samples) = the F0 hop."""
N_FFT = 1024
"""Frequency grid of the per-frame filtering: a 512-sample frame zero-padded to twice its length."""
SLOPE_CORNER_HZ = 200.0
"""The source slope is flat below this frequency (the published model's ``f_ref_source_spec``)."""
SLOPE_DB_PER_OCTAVE = 6.0
"""... and falls by this many dB per octave above it (the published model's ``harmonic_roll_off``)."""
SLOPE_HALF_TAPS = 64
"""The source slope is a zero-phase FIR filter of 2 * 64 + 1 taps (Hann-windowed design), as long as the
128-tap linear-phase filter of the published code (DDSP's ``frequency_filter`` on 65 magnitudes)."""
FRAME_DELAY = 64
"""Every synthesis frame sits this many samples into its FFT buffer, so that the zero-phase slope and
noise-band filters (at most +-64 samples) do not wrap around; the overlap-add removes the delay."""
LOG_EPS = 1e-7
SYNTH_CHUNK_FRAMES = 2048
"""Frames synthesised together: voices are processed in chunks of about this many frames so that the
[frames, bins] temporaries stay small (cache-friendly, and no large transient allocations)."""
PRODUCT_CHUNK = 128
"""Frames per chunk in the LSF products: [chunk, P, bins] stays in cache instead of P passes over memory."""
LOSS_CHUNK_SAMPLES = 256_000
"""Signal samples per chunk in the loss (e.g. 4 signals of 4 s): bounds the size of its temporaries."""


def exp_sigmoid(x: torch.Tensor, max_value: float = 2.0, exponent: float = 10.0,
                threshold: float = 1e-7) -> torch.Tensor:
    """DDSP's positive, bounded nonlinearity: ``max * sigmoid(x) ** ln(exponent) + threshold``."""
    return max_value * torch.sigmoid(x) ** math.log(exponent) + threshold


def hann(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Periodic Hann window: copies at hop n/2 sum to exactly one."""
    return torch.hann_window(n, periodic=True, device=device, dtype=dtype)


def n_frames(n_samples: int) -> int:
    """Synthesis frames for a signal of ``n_samples``: centred frames at 0, 256, ..., i.e. N // 256 + 1."""
    return n_samples // HOP + 1


# ----------------------------------------------------------------------------- vocal tract

def lsf_from_gaps(gaps: torch.Tensor, min_gap: float = 0.0) -> torch.Tensor:
    """Ordered line spectral frequencies in (0, pi) from P + 1 positive gaps.

    The gaps are normalised to sum to pi (each at least ``min_gap`` radians) and
    cumulatively summed; the last cumulative value (pi) is dropped. Strictly
    increasing inside (0, pi) whenever every gap is positive, which is what makes
    A(z) minimum-phase. ``min_gap`` bounds how sharp a resonance can get (an
    isolated LSF pair spaced d apart gives a bandwidth of about 0.6 d).
    """
    n = gaps.shape[-1]
    if min_gap * n >= math.pi:
        raise ValueError(f"minimum LSF gap {min_gap} too large for {n} gaps")
    frac = gaps / gaps.sum(dim=-1, keepdim=True)
    return torch.cumsum(min_gap + (math.pi - n * min_gap) * frac, dim=-1)[..., :-1]


def _constant(make):
    """Cache a function of hashable arguments that builds constant tensors (grids, fixed filters).

    They are rebuilt otherwise for every chunk of every batch. Built outside inference mode and
    without autograd, so that a constant first built while separating is an ordinary tensor that
    training may use later; callers must not modify what it returns.
    """
    cached = functools.lru_cache(maxsize=32)(make)

    @functools.wraps(make)
    def wrapper(*args):
        with torch.inference_mode(False), torch.no_grad():
            return cached(*args)
    return wrapper


@_constant
def _lsf_grid(n_fft: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cos w, cos(w/2), sin(w/2) on the n_fft // 2 + 1 bins (computed in float64, then cast)."""
    w = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device) * (2 * math.pi / n_fft)
    return tuple(g.to(dtype) for g in (torch.cos(w), torch.cos(w / 2), torch.sin(w / 2)))


def _lsf_products(lsf: torch.Tensor, n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """p(w) = cos(w/2) prod_odd (cos w - cos w_i),  q(w) = sin(w/2) prod_even (cos w - cos w_i).

    ``lsf`` [..., P] -> p, q [..., n_fft // 2 + 1], without autograd. P(z) and
    Q(z) (each with its trivial root at z = -1 or 1) factor into these real
    products on the unit circle.
    """
    cos_grid, half_cos, half_sin = _lsf_grid(n_fft, lsf.dtype, lsf.device)
    flat = torch.cos(lsf.detach()).reshape(-1, lsf.shape[-1])
    p = flat.new_empty(flat.shape[0], cos_grid.shape[0])
    q = torch.empty_like(p)
    for i in range(0, flat.shape[0], PRODUCT_CHUNK):
        diff = cos_grid - flat[i:i + PRODUCT_CHUNK, :, None]                # [chunk, P, bins]
        torch.mul(diff[:, 0::2].prod(1), half_cos, out=p[i:i + PRODUCT_CHUNK])
        torch.mul(diff[:, 1::2].prod(1), half_sin, out=q[i:i + PRODUCT_CHUNK])
    shape = (*lsf.shape[:-1], cos_grid.shape[0])
    return p.reshape(shape), q.reshape(shape)


def _lsf_products_backward(lsf: torch.Tensor, p: torch.Tensor, q: torch.Tensor, grad_p: torch.Tensor,
                           grad_q: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. the LSFs from those w.r.t. p and q: d p / d w_i = p sin(w_i) / (cos w - cos w_i).

    Recomputed from the products, so nothing per factor is stored. A grid
    point that coincides exactly with an LSF (0 / 0) drops that frame's
    gradient for that LSF instead of making NaN.
    """
    n_fft = 2 * (p.shape[-1] - 1)
    cos_grid = _lsf_grid(n_fft, lsf.dtype, lsf.device)[0]
    order = lsf.shape[-1]
    flat = lsf.detach().reshape(-1, order)
    cos_l, sin_l = torch.cos(flat), torch.sin(flat)
    weighted_p = (grad_p * p).reshape(-1, 1, p.shape[-1])
    weighted_q = (grad_q * q).reshape(-1, 1, p.shape[-1])
    grad = torch.empty_like(flat)
    for i in range(0, flat.shape[0], PRODUCT_CHUNK):
        rows = slice(i, i + PRODUCT_CHUNK)
        diff = cos_grid - cos_l[rows, :, None]                              # [chunk, P, bins]
        grad[rows, 0::2] = (weighted_p[rows] / diff[:, 0::2]).sum(-1)       # w1, w3, ... are roots of p
        grad[rows, 1::2] = (weighted_q[rows] / diff[:, 1::2]).sum(-1)       # w2, w4, ... of q
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0) * sin_l
    return grad.reshape(lsf.shape)


@_constant
def _linear_phase(bins: int, order: int, dtype: torch.dtype, device) -> torch.Tensor:
    """e^{jw(P+1)/2} on ``bins`` bins of a 2 (bins - 1)-point grid (complex64 for float32 ``dtype``)."""
    w = torch.arange(bins, dtype=torch.float64, device=device) * (2 * math.pi / (2 * (bins - 1)))
    return torch.exp(1j * w * (order + 1) / 2).to(torch.complex64 if dtype == torch.float32 else torch.complex128)


def _inverse_from_products(p: torch.Tensor, q: torch.Tensor, order: int) -> torch.Tensor:
    """1 / A(e^{jw}) = e^{jw(P+1)/2} / (2^{P/2} (p + j q)) (complex64 or complex128 as p)."""
    shift = _linear_phase(p.shape[-1], order, p.dtype, p.device)
    power = (p * p + q * q) * 2.0 ** (order // 2)
    return torch.complex(p / power, -q / power) * shift


class _InverseFilter(torch.autograd.Function):
    """1 / A(e^{jw}) from LSFs through the products, storing only p and q for backward."""

    @staticmethod
    def forward(ctx, lsf: torch.Tensor, n_fft: int):
        p, q = _lsf_products(lsf, n_fft)
        ctx.save_for_backward(lsf, p, q)
        return _inverse_from_products(p, q, lsf.shape[-1])

    @staticmethod
    def backward(ctx, grad_inv: torch.Tensor):
        lsf, p, q = ctx.saved_tensors
        grad_p, grad_q = _products_grad(grad_inv, _inverse_from_products(p, q, lsf.shape[-1]), p, q)
        return _lsf_products_backward(lsf, p, q, grad_p, grad_q), None


def _products_grad(grad_inv: torch.Tensor, inv_a: torch.Tensor, p: torch.Tensor, q: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients w.r.t. p and q from that w.r.t. V = 1/A = c / (p + j q) (torch's complex convention).

    dV/dp = -V / (p + j q) and dV/dq = j dV/dp, so with W = grad_V conj(-V / (p + j q)):
    grad_p = Re W and grad_q = Im W.
    """
    w = grad_inv * torch.conj(-inv_a / torch.complex(p, q))
    return w.real, w.imag


def inverse_filter_response(lsf: torch.Tensor, n_fft: int = 1024) -> torch.Tensor:
    """1 / A(e^{jw}) on the ``n_fft // 2 + 1`` bins of an n_fft-point FFT, straight from the LSFs.

    On the unit circle A = e^{-jw(P+1)/2} 2^{P/2} (p(w) + j q(w)) with p, q the
    real products of :func:`_lsf_products` (P(z) and Q(z) are in quadrature
    there). No polynomial is expanded, so no rounding can move a root: A has no
    zero on the circle while the LSFs interlace, and the result equals the FFT
    of the coefficients from :func:`lsf_to_lpc` wherever those are accurate.
    Expanding the coefficients is ill-conditioned for clustered LSFs (float64
    roots escape the unit circle); this form is not.
    """
    if lsf.shape[-1] % 2:
        raise ValueError(f"LSF order must be even, got {lsf.shape[-1]}")
    return _InverseFilter.apply(lsf, n_fft)


def envelope_db(lsf: torch.Tensor, n_fft: int = 512) -> torch.Tensor:
    """Vocal-tract envelope 20 log10 |1 / A(e^{jw})| in dB on n_fft // 2 + 1 bins."""
    return 20.0 * torch.log10(inverse_filter_response(lsf, n_fft).abs().clamp_min(1e-12))


def _poly_from_cosines(cosines: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Coefficients (in z^-1) of ``first(z) * prod_i (1 - 2 cos(w_i) z^-1 + z^-2)``."""
    poly = first.expand(*cosines.shape[:-1], first.shape[-1])
    for i in range(cosines.shape[-1]):
        c = cosines[..., i:i + 1]
        poly = F.pad(poly, (0, 2)) - 2 * c * F.pad(poly, (1, 1)) + F.pad(poly, (2, 0))
    return poly


def lsf_to_lpc(lsf: torch.Tensor) -> torch.Tensor:
    """Prediction polynomial A(z) = (P(z) + Q(z)) / 2 from sorted LSFs (even order P).

    ``lsf`` [..., P] -> ``a`` [..., P + 1] with a[0] = 1. Odd-numbered LSFs
    (w1, w3, ...) are the roots of the symmetric P(z) = A(z) + z^-(P+1) A(1/z)
    (with its root at z = -1), even-numbered ones of the antisymmetric Q(z)
    (root at z = 1). Computed in float64: products of 10 quadratics lose
    precision in float32 when LSFs crowd together.
    """
    order = lsf.shape[-1]
    if order % 2:
        raise ValueError(f"LSF order must be even, got {order}")
    lsf = lsf.to(torch.float64)
    cos = torch.cos(lsf)
    p = _poly_from_cosines(cos[..., 0::2], torch.tensor([1.0, 1.0], dtype=torch.float64, device=lsf.device))
    q = _poly_from_cosines(cos[..., 1::2], torch.tensor([1.0, -1.0], dtype=torch.float64, device=lsf.device))
    a = 0.5 * (p + q)
    return a[..., : order + 1]


# ----------------------------------------------------------------------------- excitation

def slope_magnitude(freqs_hz: torch.Tensor, corner_hz: float = SLOPE_CORNER_HZ,
                    db_per_octave: float = SLOPE_DB_PER_OCTAVE) -> torch.Tensor:
    """The published source slope |S(f)|: 1 up to ``corner_hz``, -``db_per_octave`` dB per octave above.

    |S(f)| = 10 ** (-db_per_octave / 20 * log2(f / corner)) for f > corner (Schulze-Forster et al.
    2023, Sec. III; code: ``slope_frequency_response`` with ``harmonic_roll_off`` 6 and
    ``f_ref_source_spec`` 200 in the published model's configuration).
    """
    ratio = (freqs_hz / corner_hz).clamp_min(1.0)
    return ratio ** (-db_per_octave / (20 * math.log10(2)))


def slope_taps(sr: int, corner_hz: float = SLOPE_CORNER_HZ, db_per_octave: float = SLOPE_DB_PER_OCTAVE,
               half_taps: int = SLOPE_HALF_TAPS, design_fft: int = 4096) -> torch.Tensor:
    """Zero-phase FIR taps h[-M..M] (float64, M = ``half_taps``) realising :func:`slope_magnitude`.

    Window design: the ideal zero-phase impulse response (inverse FFT of the magnitude on a
    ``design_fft``-point grid) cut to +-M samples by a Hann window, as DDSP's
    ``frequency_impulse_response`` does for the published model. With M = 64 at 16 kHz the response is
    within 1 dB of the ideal everywhere and within 0.5 dB above 400 Hz (tests/test_sf.py).
    """
    freqs = torch.arange(design_fft // 2 + 1, dtype=torch.float64) * sr / design_fft
    ideal = torch.fft.irfft(slope_magnitude(freqs, corner_hz, db_per_octave), n=design_fft)
    k = torch.arange(-half_taps, half_taps + 1)
    window = 0.5 * (1 + torch.cos(math.pi * k.double() / (half_taps + 1)))
    return ideal[k % design_fft] * window


def slope_response(sr: int, n_fft: int = N_FFT, corner_hz: float = SLOPE_CORNER_HZ,
                   db_per_octave: float = SLOPE_DB_PER_OCTAVE, device=None) -> torch.Tensor:
    """The source slope on the n_fft // 2 + 1 bins (real, zero phase: the taps are symmetric), float32."""
    taps = slope_taps(sr, corner_hz, db_per_octave)
    half = (len(taps) - 1) // 2
    if 2 * half + WIN > n_fft or half > FRAME_DELAY:
        raise ValueError(f"a {len(taps)}-tap slope filter does not fit a {n_fft}-point frame buffer")
    circular = torch.zeros(n_fft, dtype=torch.float64)
    circular[torch.arange(-half, half + 1) % n_fft] = taps
    return torch.fft.rfft(circular).real.to(torch.float32).to(device)


def _fill_unvoiced(f0: torch.Tensor) -> torch.Tensor:
    """Replace 0 (unvoiced) by the nearest voiced value along time so that phase advances sanely."""
    voiced = f0 > 0
    T = f0.shape[-1]
    idx = torch.arange(T, device=f0.device).expand_as(f0)
    last = torch.where(voiced, idx, torch.full_like(idx, -1)).cummax(dim=-1).values
    nxt = torch.where(voiced, idx, torch.full_like(idx, T)).flip(-1).cummin(dim=-1).values.flip(-1)
    use_last = (last >= 0) & ((nxt >= T) | (idx - last <= nxt - idx))
    src = torch.where(use_last, last, nxt).clamp(0, T - 1)
    filled = torch.gather(f0, -1, src)
    return torch.where(voiced, f0, torch.where((last >= 0) | (nxt < T), filled, torch.zeros_like(f0)))


def frame_f0(f0: torch.Tensor, n_samples: int) -> torch.Tensor:
    """F0 on the synthesis frame grid (``N // 256 + 1`` frames): cut, or padded with the last value."""
    L = n_frames(n_samples)
    T = f0.shape[-1]
    if T >= L:
        return f0[..., :L]
    if T == 0:
        return f0.new_zeros(*f0.shape[:-1], L)
    return torch.cat([f0, f0[..., -1:].expand(*f0.shape[:-1], L - T)], dim=-1)


@torch.no_grad()
def harmonic_frames(f0: torch.Tensor, n_samples: int, sr: int, n_harmonics: int = 101) -> torch.Tensor:
    """Hann-windowed harmonic excitation frames [..., L, 512] (float32; no learned parameter).

    Frame ``l`` holds (1/K_l) sum_{k=1}^{K_l} cos(k phi(n)) over its 512 samples,
    with phi the running phase of the sample-rate F0 (linear interpolation of the
    frame values, unvoiced gaps filled by the nearest voiced value) and K_l the
    number of harmonics below Nyquist at the highest F0 the frame sees (at most
    ``n_harmonics``); the sum is the Dirichlet kernel in closed form, which costs
    a few operations per sample whatever K is. Unvoiced frames are zero.
    """
    f0 = frame_f0(f0.to(torch.float64), n_samples)
    L = f0.shape[-1]
    voiced = f0 > 0
    filled = _fill_unvoiced(f0)
    # sample-rate F0 over the padded span [-WIN/2, (L-1)*HOP + WIN/2): the frame values held at both ends,
    # linear between frames l and l + 1 (sample l*HOP + k has weight k/HOP); by broadcasting, not gathering
    frac = torch.arange(HOP, dtype=torch.float64, device=f0.device) / HOP
    between = filled[..., :-1, None] * (1 - frac) + filled[..., 1:, None] * frac       # [..., L - 1, HOP]
    edge = WIN // 2
    f0_s = torch.cat([filled[..., :1].expand(*filled.shape[:-1], edge), between.flatten(-2),
                      filled[..., -1:].expand(*filled.shape[:-1], edge)], dim=-1)
    phase = torch.remainder(2 * math.pi * torch.cumsum(f0_s, dim=-1) / sr + math.pi, 2 * math.pi) - math.pi
    phase = phase.to(torch.float32)
    frames = phase.unfold(-1, WIN, HOP)                                         # [..., L, WIN]
    # highest F0 around each frame decides how many harmonics stay below Nyquist
    f0_max = F.max_pool1d(filled.reshape(-1, 1, L), 3, stride=1, padding=1).reshape(filled.shape)
    K = torch.floor((sr / 2) / f0_max.clamp_min(1.0)).clamp(1, n_harmonics).to(torch.float32)[..., None]
    s = torch.sin(0.5 * phase).unfold(-1, WIN, HOP)  # per sample, not per frame: frames overlap twice
    tiny = s.abs() < 1e-6
    dirichlet = torch.sin((K + 0.5) * frames).div_((2 * s).masked_fill_(tiny, 1.0)).sub_(0.5)
    dirichlet = torch.where(tiny, K, dirichlet)
    return dirichlet.div_(K).mul_(hann(WIN, f0.device)).masked_fill_(~voiced[..., None], 0.0)


def noise_frames(shape: tuple[int, ...], n_samples: int, generator: torch.Generator | None = None,
                 device=None, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """Hann-windowed frames [*shape, L, 512] of one continuous uniform white noise in [-1, 1].

    ``generators`` (one per ``shape[0]`` row, instead of ``generator``) draw each row's noise from its
    own generator, so a row gets the same noise alone or in a batch.
    """
    L = n_frames(n_samples)
    if generators is None:
        noise = torch.rand(*shape, (L - 1) * HOP + WIN, generator=generator, device=device)
    else:
        if len(generators) != shape[0]:
            raise ValueError(f"{len(generators)} noise generators for {shape[0]} rows")
        noise = torch.empty(*shape, (L - 1) * HOP + WIN, device=device)
        for row, gen in zip(noise, generators):
            torch.rand(row.shape, generator=gen, device=device, out=row)
    return (noise * 2 - 1).unfold(-1, WIN, HOP) * hann(WIN, device)


@_constant
def _excitation_filters(sr: int, n_fft: int, corner_hz: float, db_per_octave: float, device
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(source slope times the ``FRAME_DELAY`` delay, the delay alone) on the n_fft grid, complex64."""
    bins = torch.arange(n_fft // 2 + 1, device=device, dtype=torch.float64)
    delay = torch.exp(-2j * math.pi * bins * FRAME_DELAY / n_fft).to(torch.complex64)
    return slope_response(sr, n_fft, corner_hz, db_per_octave, device=device) * delay, delay


@torch.no_grad()
def excitation_spectra(f0: torch.Tensor, n_samples: int, sr: int, n_harmonics: int = 101,
                       generator: torch.Generator | None = None, n_fft: int = N_FFT,
                       slope_corner_hz: float = SLOPE_CORNER_HZ, slope_db_per_octave: float = SLOPE_DB_PER_OCTAVE,
                       generators: Sequence[torch.Generator] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The parameter-free parts of the synthesis, per frame on the n_fft grid (complex64).

    Returns (slope-filtered harmonic spectra, white-noise spectra), both
    [..., L, n_fft // 2 + 1] and both delayed by ``FRAME_DELAY`` samples in
    their buffers (see the module docstring). ``generators``: one per row of
    f0's first axis instead of ``generator`` (see :func:`noise_frames`).
    """
    slope, delay = _excitation_filters(sr, n_fft, float(slope_corner_hz), float(slope_db_per_octave), f0.device)
    flat = f0.reshape(-1, f0.shape[-1])
    L = n_frames(n_samples)
    harm = torch.empty(flat.shape[0], L, n_fft // 2 + 1, dtype=torch.complex64, device=f0.device)
    step = max(1, SYNTH_CHUNK_FRAMES // L)  # voice by voice chunk: small temporaries
    for v in range(0, flat.shape[0], step):
        frames = harmonic_frames(flat[v:v + step], n_samples, sr, n_harmonics)
        torch.mul(torch.fft.rfft(frames, n=n_fft, dim=-1), slope, out=harm[v:v + step])
    noise = torch.fft.rfft(noise_frames(tuple(f0.shape[:-1]), n_samples, generator, f0.device, generators),
                           n=n_fft, dim=-1)
    return harm.reshape(*f0.shape[:-1], L, -1), noise.mul_(delay)


def band_response(bands: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Noise-filter magnitude on ``n_bins`` bins from band magnitudes linearly spaced 0..Nyquist."""
    flat = bands.reshape(-1, 1, bands.shape[-1])
    out = F.interpolate(flat, size=n_bins, mode="linear", align_corners=True)
    return out.reshape(*bands.shape[:-1], n_bins)


# ----------------------------------------------------------------------------- synthesis

def _irfft_adjoint_gain(n_fft: int, device, dtype) -> torch.Tensor:
    """Per-bin factor of irfft's adjoint: grad_Y = rfft(grad_x) * c / n, c = 1 at DC and Nyquist, else 2."""
    c = torch.full((n_fft // 2 + 1,), 2.0 / n_fft, device=device, dtype=dtype)
    c[0] = c[-1] = 1.0 / n_fft
    return c


class _VoiceSignals(torch.autograd.Function):
    """Synthesised voices from their controls: Y_l = (a_l S H_l + g_l B N_l) / A_l, inverse FFT, overlap-add.

    Done voice chunk by voice chunk, keeping nothing per frame for backward but
    the inputs: backward recomputes 1/A, the source and the frame gradients
    (the adjoint of overlap-add and of the inverse FFT) chunk by chunk.
    Autograd would keep the source, the per-frame spectra, the frames and
    every intermediate of 1/A. Gradients follow torch's convention for complex
    tensors (the gradient of a product x y w.r.t. x is grad conj(y)).
    """

    @staticmethod
    def forward(ctx, lsf, amplitude, noise_gain, band, harm, noise, n_samples: int):
        lead, (L, bins), order = harm.shape[:-2], harm.shape[-2:], lsf.shape[-1]
        n_fft = 2 * (bins - 1)
        flat = [x.reshape(-1, *x.shape[len(lead):]) for x in (lsf, amplitude, noise_gain, band, harm, noise)]
        out = harm.real.new_empty(flat[0].shape[0], n_samples)
        step = max(1, SYNTH_CHUNK_FRAMES // L)
        for v in range(0, out.shape[0], step):
            lsf_c, amp_c, gain_c, band_c, harm_c, noise_c = (x[v:v + step] for x in flat)
            p, q = _lsf_products(lsf_c, n_fft)
            spectra = _source(amp_c, gain_c, band_c, harm_c, noise_c).mul_(_inverse_from_products(p, q, order))
            out[v:v + step] = frames_to_signal(spectra, n_samples, n_fft)
        ctx.save_for_backward(lsf, amplitude, noise_gain, band, harm, noise)
        return out.reshape(*lead, n_samples)

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        lead, L, bins = saved[4].shape[:-2], saved[4].shape[-2], saved[4].shape[-1]
        n_fft, order = 2 * (bins - 1), saved[0].shape[-1]
        lsf, amplitude, noise_gain, band, harm, noise = (x.reshape(-1, *x.shape[len(lead):]) for x in saved)
        grad_out = grad_out.reshape(-1, grad_out.shape[-1])
        grads = [torch.empty_like(x) for x in (lsf, amplitude, noise_gain, band)]
        gain = _irfft_adjoint_gain(n_fft, grad_out.device, grad_out.dtype)
        step = max(1, SYNTH_CHUNK_FRAMES // L)
        for v in range(0, lsf.shape[0], step):
            sl = slice(v, v + step)
            # adjoint of overlap-add (frame l's buffer starts at sample 256 l - 256 - FRAME_DELAY) and of
            # the inverse FFT
            start = WIN // 2 + FRAME_DELAY
            buffer = F.pad(grad_out[sl], (start, (L + 3) * HOP - start - grad_out.shape[-1]))
            grad_y = torch.fft.rfft(buffer.unfold(-1, n_fft, HOP)[:, :L], n=n_fft).mul_(gain)
            p, q = _lsf_products(lsf[sl], n_fft)
            inv_a = _inverse_from_products(p, q, order)
            grad_source = grad_y * inv_a.conj()
            grads[1][sl] = _real_inner(grad_source, harm[sl])
            grad_noise = torch.view_as_real(grad_source).mul_(torch.view_as_real(noise[sl])).sum(-1)  # Re(gs conj N)
            grads[2][sl] = (grad_noise * band[sl, None, :]).sum(-1)
            grads[3][sl] = (grad_noise * noise_gain[sl, :, None]).sum(-2)
            del grad_source, grad_noise
            source = _source(amplitude[sl], noise_gain[sl], band[sl], harm[sl], noise[sl])
            grad_p, grad_q = _products_grad(grad_y.mul_(source.conj_physical_()), inv_a, p, q)
            grads[0][sl] = _lsf_products_backward(lsf[sl], p, q, grad_p, grad_q)
        return (*(g.reshape(x.shape) for g, x in zip(grads, saved)), None, None, None)


def _source(amplitude, noise_gain, band, harm, noise) -> torch.Tensor:
    """a_l S H_l + g_l B N_l per frame (a fresh tensor)."""
    return (harm * amplitude[..., None]).add_(noise * (noise_gain[..., None] * band[..., None, :]))


def _real_inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Re sum_bins x conj(y) over the last axis, without forming the complex product."""
    return torch.view_as_real(x).mul(torch.view_as_real(y)).sum((-1, -2))


def voice_signals(lsf: torch.Tensor, amplitude: torch.Tensor, noise_gain: torch.Tensor, band: torch.Tensor,
                  harm: torch.Tensor, noise: torch.Tensor, n_samples: int) -> torch.Tensor:
    """The synthesised voices [..., n_samples] from frame controls.

    Per frame, Y_l = (a_l S H_l + g_l B N_l) / A_l; the frames are taken back to
    time and overlap-added (:func:`frames_to_signal`). lsf [..., L, P] (radians);
    amplitude, noise_gain [..., L]; band [..., bins] (the noise filter B on the
    grid, see :func:`band_response`); harm (S H) and noise (N) [..., L, bins]
    from :func:`excitation_spectra`.
    """
    if lsf.shape[-1] % 2:
        raise ValueError(f"LSF order must be even, got {lsf.shape[-1]}")
    return _VoiceSignals.apply(lsf, amplitude, noise_gain, band, harm, noise, n_samples)


def overlap_add_span(frames: torch.Tensor, hop: int, min_length: int = 0) -> torch.Tensor:
    """Overlap-add frames [..., L, n] (n a multiple of ``hop``), frame l starting at sample l * hop.

    Returns the whole span, [..., (L + n / hop - 1) * hop] samples, zero-padded
    to at least ``min_length``.
    """
    *lead, L, n = frames.shape
    parts = n // hop
    blocks = max(L + parts - 1, -(-min_length // hop))
    out = frames.new_zeros(*lead, blocks, hop)
    chunks = frames.reshape(*lead, L, parts, hop)
    for i in range(parts):  # part i of frame l lands on block l + i
        out[..., i:i + L, :] += chunks[..., i, :]
    return out.reshape(*lead, blocks * hop)


def overlap_add(frames: torch.Tensor, n_samples: int, delay: int = 0) -> torch.Tensor:
    """Overlap-add synthesis frames [..., L, n] (n a multiple of HOP) at hop 256; cut to the signal span.

    Frame l's first sample sits at sample l * 256 - 256 - ``delay`` of the signal.
    """
    return overlap_add_span(frames, HOP)[..., WIN // 2 + delay:WIN // 2 + delay + n_samples]


def frames_to_signal(spectra: torch.Tensor, n_samples: int, n_fft: int = N_FFT) -> torch.Tensor:
    """Per-frame spectra (delayed by ``FRAME_DELAY`` in their buffers) -> time signal [..., n_samples]
    by inverse FFT and overlap-add."""
    return overlap_add(torch.fft.irfft(spectra, n=n_fft, dim=-1), n_samples, FRAME_DELAY)


# ----------------------------------------------------------------------------- loss

def _stft(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """The loss's STFT: Hann, hop n_fft / 4, centred with reflection padding: [rows, bins, frames]."""
    return torch.stft(x, n_fft, hop_length=n_fft // 4, window=hann(n_fft, x.device, x.dtype), center=True,
                      return_complex=True)


def _magnitude(spec: torch.Tensor) -> torch.Tensor:
    """|X| as sqrt(X conj X): about 2.5x faster on CPU than torch's complex abs (hypot)."""
    return (spec * spec.conj()).real.sqrt()


def _stft_adjoint(grad_spec: torch.Tensor, n_fft: int, n_samples: int) -> torch.Tensor:
    """The adjoint of :func:`_stft` (what autograd's STFT backward computes): [rows, bins, frames] -> [rows, N].

    Per frame, the adjoint of the real FFT is n * irfft(g * c) with c = 1 at DC
    and Nyquist and 1/2 elsewhere; then the window, overlap-add at hop n/4,
    and the reflection padding folded back onto the signal.
    """
    hop, pad = n_fft // 4, n_fft // 2
    real = grad_spec.real.dtype
    c = torch.full((grad_spec.shape[-2], 1), 0.5 * n_fft, device=grad_spec.device, dtype=real)
    c[0] = c[-1] = n_fft
    frames = torch.fft.irfft((grad_spec * c).transpose(1, 2), n=n_fft) * hann(n_fft, grad_spec.device, real)
    padded = overlap_add_span(frames, hop, n_samples + 2 * pad)  # frames may stop short of the padded end
    grad = padded[:, pad:pad + n_samples].clone()
    grad[:, 1:pad + 1] += padded[:, :pad].flip(-1)                                  # left reflection
    grad[:, n_samples - pad - 1:n_samples - 1] += padded[:, pad + n_samples:2 * pad + n_samples].flip(-1)
    return grad


class _MultiscaleLoss(torch.autograd.Function):
    """The multi-scale loss with its gradient computed in closed form during the forward pass.

    Per FFT size, with M = |X| the estimate's magnitudes and K their count,
    d/dM (|T - M| + |log(T + e) - log(M + e)|) / K = sign(M - T) (1 + 1 / (M + e)) / K
    (log is monotonic, so both terms share the sign); the gradient w.r.t. X is
    that times X / M, taken back to the signal by the STFT's adjoint. Only the
    gradient w.r.t. the estimate (one signal-sized tensor) is kept for
    backward: autograd would keep every scale's spectra alive (about 1.3 GB
    for 60 voices of 4 s) and run a slower generic STFT backward.
    """

    @staticmethod
    def forward(ctx, target: torch.Tensor, estimate: torch.Tensor, fft_sizes: tuple[int, ...]):
        total = estimate.new_zeros((), dtype=torch.float64)
        grad = torch.zeros_like(estimate) if ctx.needs_input_grad[1] else None
        rows, n_samples = estimate.shape
        step = max(1, LOSS_CHUNK_SAMPLES // n_samples)  # a few signals at a time: small temporaries
        for n_fft in fft_sizes:
            count = rows * (n_fft // 2 + 1) * (n_samples // (n_fft // 4) + 1)   # magnitudes averaged over
            for r in range(0, rows, step):
                spec = _stft(estimate[r:r + step], n_fft)
                mag_e = _magnitude(spec)
                mag_t = _magnitude(_stft(target[r:r + step], n_fft))
                diff = mag_e - mag_t
                log_diff = torch.log(mag_e + LOG_EPS) - torch.log(mag_t + LOG_EPS)
                total += (diff.abs().sum().double() + log_diff.abs().sum().double()) / count
                if grad is not None:
                    scale = torch.sign(diff).mul_(1 + 1 / (mag_e + LOG_EPS)).div_(count)
                    grad_spec = spec * torch.where(mag_e > 0, scale / mag_e, torch.zeros_like(scale))
                    grad[r:r + step] += _stft_adjoint(grad_spec, n_fft, n_samples)
        ctx.save_for_backward(grad)
        return total.to(estimate.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return None, None if grad is None else grad * grad_output, None


def multiscale_spectral_loss(target: torch.Tensor, estimate: torch.Tensor,
                             fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)) -> torch.Tensor:
    """Sum over FFT sizes of mean |M - M^| + mean |log M - log M^| (Hann, 75 % overlap).

    Magnitudes of both signals [..., N]; zero for identical inputs. The target
    gets no gradient. See :class:`_MultiscaleLoss` for how memory is kept low.
    """
    target = target.detach().reshape(-1, target.shape[-1])
    estimate = estimate.reshape(-1, estimate.shape[-1])
    return _MultiscaleLoss.apply(target, estimate, tuple(fft_sizes))
