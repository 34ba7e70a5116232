"""Tests of the differentiable source-filter model: signal model, loss, training, resume, outputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.prepared import ExcerptSampler, load_excerpt
from choirbench.methods import sf_dsp
from choirbench.methods.sf import SourceFilter
from choirbench.methods.sf_model import MLP, Architecture, ExcerptNorm, SourceFilterNet, _SharedInputGRU
from conftest import Killed, KillableSampler

TINY = {"encoder_hidden": 16, "encoder_layers": 2, "embedding": 16, "decoder_hidden": 32, "mlp_layers": 2,
        "n_harmonics": 30, "excerpt_s": 1.0, "batch_size": 4, "lr": 3e-3, "device": "cpu",
        "loss_fft_sizes": [1024, 256, 64], "max_valid_examples": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def lsf_batch(scale: float, n: int = 400, seed: int = 0, min_gap_hz: float = 50.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    gaps = sf_dsp.exp_sigmoid(torch.randn(n, 21, generator=gen, dtype=torch.float64) * scale)
    return sf_dsp.lsf_from_gaps(gaps, 2 * math.pi * min_gap_hz / SAMPLE_RATE)


# ----------------------------------------------------------------------------- vocal tract

@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_lsf_to_lpc_is_minimum_phase_for_network_like_outputs(scale):
    a = sf_dsp.lsf_to_lpc(lsf_batch(scale)).numpy()
    assert np.allclose(a[:, 0], 1.0)
    radii = np.array([np.abs(np.roots(coeffs)).max() for coeffs in a])
    assert radii.max() < 1.0, radii.max()


def winding_number(lsf: torch.Tensor, n_grid: int = 1 << 14) -> np.ndarray:
    """Turns of A(e^jw) around 0 for w in [0, 2 pi): 0 <=> all P roots of A(z) inside the unit circle."""
    inv = sf_dsp.inverse_filter_response(lsf, n_grid).numpy()              # w in [0, pi]
    a = 1.0 / inv
    full = np.concatenate([a, np.conj(a[..., -2:0:-1])], axis=-1)         # [0, 2 pi)
    phase = np.unwrap(np.angle(full), axis=-1)
    closing = np.angle(full[..., :1] / full[..., -1:])[..., 0]           # last step back to w = 0
    return np.round((phase[..., -1] - phase[..., 0] + closing) / (2 * np.pi)).astype(int)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_filter_used_is_minimum_phase_even_for_extreme_outputs(scale):
    """Expanded float64 coefficients lose roots outside the circle for clustered LSFs; the
    product form the synthesiser uses keeps A(e^jw) winding zero times around the origin."""
    lsf = lsf_batch(scale, n=20)
    lsf = torch.cat([lsf, extreme_lsfs()])
    assert np.all(winding_number(lsf) == 0)
    assert torch.all(torch.isfinite(sf_dsp.inverse_filter_response(lsf)))


def extreme_lsfs() -> torch.Tensor:
    """Every LSF but one crowded at the minimum spacing, the big gap moved around."""
    rows = []
    for big in range(0, 21, 4):
        gaps = torch.full((21,), 1e-9, dtype=torch.float64)
        gaps[big] = 1.0
        rows.append(gaps)
    return sf_dsp.lsf_from_gaps(torch.stack(rows), 2 * math.pi * 50.0 / SAMPLE_RATE)


def test_minimum_phase_detector_can_fail():
    """The winding test is not a tautology: a maximum-phase A(z) (reversed coefficients) winds."""
    a = sf_dsp.lsf_to_lpc(lsf_batch(1.0, n=1)).numpy()[0]
    reversed_a = a[::-1] / a[-1]
    spec = np.fft.fft(reversed_a, 1 << 14)
    turns = np.round((np.unwrap(np.angle(spec))[-1] - np.angle(spec[0])) / (2 * np.pi))
    assert abs(turns) >= 10


def test_product_form_equals_fft_of_coefficients():
    lsf = lsf_batch(1.0, n=50)
    a = sf_dsp.lsf_to_lpc(lsf)
    expected = 1.0 / torch.fft.rfft(a, n=1024)
    got = sf_dsp.inverse_filter_response(lsf, 1024)
    assert torch.max((got - expected).abs() / expected.abs()) < 1e-6  # coefficient rounding


def test_frequency_domain_filtering_matches_lfilter_frame_by_frame():
    """Stated tolerance: the 1024-point product equals lfilter on the 512-sample frame with the impulse
    response folded at 1024 samples (1e-6), and lfilter itself within 1e-4 of the frame peak for
    filters whose poles have radius <= 0.98 (bandwidths >= 100 Hz)."""
    rng = np.random.default_rng(1)
    lsf = lsf_batch(0.5, n=40, seed=3, min_gap_hz=150.0)
    a = sf_dsp.lsf_to_lpc(lsf).numpy()
    inv = sf_dsp.inverse_filter_response(lsf, sf_dsp.N_FFT).numpy()
    window = np.hanning(sf_dsp.WIN + 1)[:-1]
    checked = 0
    for coeffs, response in zip(a, inv):
        frame = rng.standard_normal(sf_dsp.WIN) * window
        y_fd = np.fft.irfft(np.fft.rfft(frame, sf_dsp.N_FFT) * response, sf_dsp.N_FFT)
        y_td = scipy.signal.lfilter([1.0], coeffs, np.r_[frame, np.zeros(16 * sf_dsp.N_FFT - sf_dsp.WIN)])
        peak = np.abs(y_td).max()
        folded = y_td.reshape(-1, sf_dsp.N_FFT).sum(0)
        assert np.abs(y_fd - folded).max() < 1e-6 * peak
        if np.abs(np.roots(coeffs)).max() <= 0.98:
            assert np.abs(y_fd - y_td[: sf_dsp.N_FFT]).max() < 1e-4 * peak
            checked += 1
    assert checked >= 10


def test_inverse_filter_gradient():
    lsf = lsf_batch(1.0, n=3).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: sf_dsp.inverse_filter_response(x, 64), (lsf,))


def test_fused_synthesis_matches_the_formula_and_its_gradient():
    """voice_signals computes overlap-add(irfft((a S H + g B N) / A)) chunk by chunk with a hand-written
    backward: same values as the formula written out with autograd, and gradcheck passes (float64)."""
    gen = torch.Generator().manual_seed(0)
    V, L, bins = 3, 5, 257
    n_samples = (L - 1) * HOP
    lsf = lsf_batch(1.0, n=V * L).reshape(V, L, 20).requires_grad_(True)
    amp, gain = (torch.rand(V, L, generator=gen, dtype=torch.float64).requires_grad_(True) for _ in range(2))
    band = torch.rand(V, bins, generator=gen, dtype=torch.float64).requires_grad_(True)
    harm, noise = (torch.randn(V, L, bins, generator=gen, dtype=torch.complex128) for _ in range(2))
    formula = (amp[..., None] * harm + gain[..., None] * band[:, None] * noise) * \
        sf_dsp.inverse_filter_response(lsf, 2 * (bins - 1))
    expected = sf_dsp.frames_to_signal(formula, n_samples, 2 * (bins - 1))
    old_chunk = sf_dsp.SYNTH_CHUNK_FRAMES
    try:
        sf_dsp.SYNTH_CHUNK_FRAMES = L  # one voice per chunk: the chunking is exercised too
        fused = sf_dsp.voice_signals(lsf, amp, gain, band, harm, noise, n_samples)
        assert torch.allclose(fused, expected, rtol=1e-12, atol=1e-12)
        assert torch.autograd.gradcheck(lambda *x: sf_dsp.voice_signals(*x, harm, noise, n_samples),
                                        (lsf, amp, gain, band), fast_mode=True)
    finally:
        sf_dsp.SYNTH_CHUNK_FRAMES = old_chunk


def test_synthesiser_equals_the_published_signal_model_written_out():
    """Fixed controls (F0 with vibrato, moving amplitude, noise gain, 40 noise bands, LSFs drifting
    between two filters) through the fast frame-wise synthesiser, against the published signal model
    written out plainly at the sample rate:

        u = s * (a(n) sum_k cos(k phi(n)) / K)  +  g(n) (b * nu)(n)
        y = sum_l h_l * (w_l u)          (window frame l, all-pole 1/A_l with its full tail, overlap-add)

    with a(n), g(n) the Hann (overlap-add) interpolation of the frame values (DDSP's 'window'
    resampling), s the source-slope FIR, b the noise-band filter, nu the same white noise.
    Tolerance: error energy < -40 dB of the signal's. Measured -47.6 dB; its parts (measured by
    switching controls off): the harmonic path with fixed controls -88 dB (float32, 1/A tail folding
    beyond 384 samples for pole radius 0.96), moving LSFs and amplitude -65 dB (the fast path applies
    the +-64-sample slope FIR to each windowed frame, i.e. before the per-frame gain and filter, the
    published code to the whole signal), the noise-band filter's impulse response beyond +-64 samples
    wrapping in the frame buffer -54 dB. The published code's own frame order (a rectangular frame
    through 1/A_l from zero state, windowed afterwards) is a further -44 dB away from either.
    """
    L, K = 41, 20
    N = (L - 1) * HOP
    frames = np.arange(L)
    f0 = 220 * 2 ** (0.5 / 12 * np.sin(2 * np.pi * 5.5 * frames * HOP / SAMPLE_RATE))
    amp = 0.5 + 0.3 * np.sin(2 * np.pi * frames / 25)
    gain = 0.05 + 0.03 * np.cos(2 * np.pi * frames / 17)
    bands = np.random.default_rng(0).uniform(0.2, 1.0, 40)
    ends = lsf_batch(0.5, n=2, seed=3, min_gap_hz=150.0).numpy()
    lsf = ends[0] + (ends[1] - ends[0]) * np.linspace(0, 1, L)[:, None]
    a = sf_dsp.lsf_to_lpc(torch.tensor(lsf)).numpy()
    assert max(np.abs(np.roots(c)).max() for c in a) < 0.97

    harm, noise = sf_dsp.excitation_spectra(torch.tensor(f0, dtype=torch.float32)[None], N, SAMPLE_RATE, K,
                                            generator=torch.Generator().manual_seed(5))
    band = sf_dsp.band_response(torch.tensor(bands, dtype=torch.float32)[None], harm.shape[-1])
    fast = sf_dsp.voice_signals(*(torch.tensor(x, dtype=torch.float32)[None] for x in (lsf, amp, gain)),
                                band, harm, noise, N)[0].double().numpy()

    span = (L - 1) * HOP + sf_dsp.WIN                      # samples -256 .. N + 255
    f0_s = np.interp(np.clip((np.arange(span) - HOP) / HOP, 0, L - 1), frames, f0)
    phase = 2 * np.pi * np.cumsum(f0_s) / SAMPLE_RATE
    harmonics = np.cos(np.arange(1, K + 1)[:, None] * phase).sum(0) / K
    window = np.hanning(sf_dsp.WIN + 1)[:-1]

    def interpolate(values):
        out = np.zeros(span)
        for i, v in enumerate(values):
            out[i * HOP:i * HOP + sf_dsp.WIN] += v * window
        return out

    white = (torch.rand(1, span, generator=torch.Generator().manual_seed(5)) * 2 - 1)[0].double().numpy()
    b = np.fft.irfft(band[0].double().numpy(), sf_dsp.N_FFT)
    b = np.r_[b[-(sf_dsp.N_FFT // 2 - 1):], b[:sf_dsp.N_FFT // 2]]     # lags -511 .. 511
    source = np.convolve(interpolate(amp) * harmonics, sf_dsp.slope_taps(SAMPLE_RATE).numpy(), "same") + \
        interpolate(gain) * np.convolve(white, b, "same")
    out = np.zeros(span + 4096)
    for i in range(L):
        frame = np.r_[source[i * HOP:i * HOP + sf_dsp.WIN] * window, np.zeros(4096 - sf_dsp.WIN)]
        out[i * HOP:i * HOP + 4096] += scipy.signal.lfilter([1.0], a[i], frame)
    plain = out[HOP:HOP + N]
    error_db = 10 * np.log10(np.sum((fast - plain) ** 2) / np.sum(plain ** 2))
    assert error_db < -40, error_db


def test_source_slope_is_flat_below_200_hz_and_falls_6_db_per_octave_above():
    """The realised (129-tap, zero-phase) slope against the published curve: within 1.1 dB everywhere
    (the knee at 200 Hz is rounded), within 0.5 dB above 400 Hz; zero phase; and the old one-pole
    low-pass (-3 dB at 200 Hz, -7 dB at 400 Hz) would fail."""
    response = sf_dsp.slope_response(SAMPLE_RATE).double()
    freqs = torch.arange(len(response), dtype=torch.float64) * SAMPLE_RATE / sf_dsp.N_FFT
    ideal = sf_dsp.slope_magnitude(freqs)
    assert ideal[freqs <= 200].eq(1).all()
    octave = freqs >= 400
    per_octave = 20 * torch.log10(sf_dsp.slope_magnitude(2 * freqs[octave]) / ideal[octave])
    assert torch.allclose(per_octave, torch.full_like(per_octave, -6.0))
    error_db = 20 * torch.log10(response / ideal)
    assert error_db.abs().max() < 1.1 and error_db[freqs > 400].abs().max() < 0.5
    taps = sf_dsp.slope_taps(SAMPLE_RATE)
    assert torch.allclose(taps, taps.flip(0), rtol=0, atol=1e-12) and len(taps) == 2 * sf_dsp.SLOPE_HALF_TAPS + 1
    p = math.exp(-2 * math.pi * 200 / SAMPLE_RATE)
    one_pole = (1 - p) / (1 - p * torch.exp(-2j * math.pi * freqs / SAMPLE_RATE)).abs()
    assert (20 * torch.log10(one_pole / ideal)).abs().max() > 1.1


# ----------------------------------------------------------------------------- network

def test_encoder_normalises_over_the_whole_excerpt_with_per_frequency_scale_and_shift():
    """The encoder's first GRU sees (X - mean) / sqrt(var + 1e-5) * scale[f] + shift[f], X the
    log-magnitude spectrogram of each excerpt, mean and (biased) variance over all its frames and
    bins (numpy, float64, written out here); random scale and shift. A per-frame norm would differ:
    a louder second half must stay louder after normalisation."""
    torch.manual_seed(0)
    arch = Architecture(encoder_hidden=8, encoder_layers=2, embedding=8, decoder_hidden=16, mlp_layers=1)
    model = SourceFilterNet(arch)
    assert isinstance(model.encoder.norm, ExcerptNorm)
    with torch.no_grad():
        model.encoder.norm.scale.uniform_(0.5, 2.0)
        model.encoder.norm.shift.normal_()
    mix = torch.randn(2, 20 * HOP)
    mix[:, 10 * HOP:] *= 10
    seen = {}

    def keep_input(module, inputs, output):
        seen["x"] = inputs[0]

    model.encoder.grus[0].register_forward_hook(keep_input)
    model.encoder(mix)
    spec = torch.stft(mix, 512, HOP, window=torch.hann_window(512), return_complex=True)
    log_mag = np.log(spec.abs().double().numpy() + 1e-6).transpose(0, 2, 1)         # [B, frames, bins]
    mean = log_mag.mean(axis=(1, 2), keepdims=True)
    var = ((log_mag - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    expected = (log_mag - mean) / np.sqrt(var + 1e-5) * model.encoder.norm.scale.detach().double().numpy() + \
        model.encoder.norm.shift.detach().double().numpy()
    assert np.allclose(seen["x"].detach().numpy(), expected, atol=1e-4)
    unscaled = (log_mag - mean) / np.sqrt(var + 1e-5)
    assert unscaled[:, 14:18].mean() > unscaled[:, 2:6].mean() + 0.5      # loudness envelope kept


def test_noise_gain_never_exceeds_one_and_reaches_it():
    """exp_sigmoid with max_value 1 (published): pushed as high as it goes the gain is 1 (+ the 1e-7
    floor of exp_sigmoid), never the previous ceiling of 2."""
    torch.manual_seed(0)
    model = SourceFilterNet(Architecture(encoder_hidden=8, encoder_layers=1, embedding=8, decoder_hidden=16,
                                         mlp_layers=1, n_harmonics=10))
    f0 = torch.full((1, 2, 12), 220.0)
    mix = torch.randn(1, 11 * HOP)
    for bias in (-50.0, 0.0, 3.0, 1e4):
        with torch.no_grad():
            model.decoder.frame_head.bias[1] = bias
        gain = model.controls(mix, f0)["noise_gain"]
        assert gain.max() <= 1.0 + 1e-7
    assert gain.min() > 0.999
    assert SourceFilter({}).params["noise_gain_max"] == 1.0


def test_lsf_gaps_are_unconstrained_by_default_and_bounded_when_asked():
    """Default: no minimum LSF spacing (published lsf_activation), so extreme gap logits put LSFs
    far closer than the old 50 Hz floor; ``lsf_min_gap_hz`` 50 restores that floor."""
    assert Architecture().lsf_min_gap_hz == 0.0 and SourceFilter({}).params["lsf_min_gap_hz"] == 0.0
    f0 = torch.full((1, 1, 12), 220.0)
    mix = torch.randn(1, 11 * HOP)
    spacings = {}
    for min_gap in (0.0, 50.0):
        torch.manual_seed(0)
        model = SourceFilterNet(Architecture(encoder_hidden=8, encoder_layers=1, embedding=8, decoder_hidden=16,
                                             mlp_layers=1, n_harmonics=10, lsf_min_gap_hz=min_gap))
        with torch.no_grad():
            model.decoder.frame_head.bias[2:] = torch.tensor([-8.0, 8.0] * 10 + [8.0])
        lsf = model.controls(mix, f0)["lsf"]
        spacings[min_gap] = (torch.diff(lsf, dim=-1).min() * SAMPLE_RATE / (2 * math.pi)).item()
    assert spacings[0.0] < 1.0, spacings
    assert spacings[50.0] >= 50.0 - 1e-3, spacings


def test_checkpoint_architecture_must_name_every_current_field():
    stored = Architecture().to_dict()
    assert Architecture.from_stored(stored) == Architecture()
    old = {k: v for k, v in stored.items() if k not in ("noise_gain_max", "slope_corner_hz")}
    with pytest.raises(ValueError, match="noise_gain_max"):
        Architecture.from_stored(old)
    with pytest.raises(ValueError, match="per_frame_norm"):
        Architecture.from_stored({**stored, "per_frame_norm": True})


# ----------------------------------------------------------------------------- source

def test_harmonic_source_peaks_at_multiples_of_f0_and_nothing_above_nyquist():
    n = 16000
    f0_hz = 700.0  # 11 harmonics below 8 kHz
    f0 = torch.full((1, n // HOP), f0_hz)
    frames = sf_dsp.harmonic_frames(f0, n, SAMPLE_RATE, n_harmonics=101)
    signal = sf_dsp.overlap_add(torch.nn.functional.pad(frames, (0, sf_dsp.N_FFT - sf_dsp.WIN)), n)[0].numpy()
    spec = np.abs(np.fft.rfft(signal[2000:2000 + 8192] * np.hanning(8192)))
    freqs = np.fft.rfftfreq(8192, 1 / SAMPLE_RATE)
    peaks, _ = scipy.signal.find_peaks(spec, height=spec.max() * 0.05)
    found = freqs[peaks]
    expected = f0_hz * np.arange(1, 12)
    assert len(found) == len(expected)
    assert np.allclose(found, expected, atol=3.0)
    heights = spec[peaks]
    assert heights.max() / heights.min() < 1.3  # equal amplitudes before the slope filter
    # a harmonic above Nyquist would alias to 16000 - 12 * 700 = 7600 Hz: nothing there
    assert spec[np.abs(freqs - 7600) < 30].max() < 1e-3 * spec.max()


def test_gliding_harmonic_source_has_no_aliases():
    """F0 glides 600 -> 700 Hz: where harmonics above Nyquist would fold (16 kHz - k F0) there is nothing."""
    n = 32000
    f0_frames = np.linspace(600, 700, n // HOP)
    frames = sf_dsp.harmonic_frames(torch.tensor(f0_frames, dtype=torch.float32)[None], n, SAMPLE_RATE)
    signal = sf_dsp.overlap_add(torch.nn.functional.pad(frames, (0, sf_dsp.N_FFT - sf_dsp.WIN)), n)[0].numpy()
    f, t, spec = scipy.signal.stft(signal, SAMPLE_RATE, nperseg=2048, noverlap=1536)
    mag = np.abs(spec)
    checked = 0
    for i, time_s in enumerate(t[2:-2], start=2):
        f0 = np.interp(time_s * SAMPLE_RATE / HOP, np.arange(len(f0_frames)), f0_frames)
        harmonics = f0 * np.arange(1, 30)
        for k in range(1, 30):
            if SAMPLE_RATE / 2 + 200 < k * f0 < SAMPLE_RATE:  # (near Nyquist the STFT smears real harmonics)
                alias = SAMPLE_RATE - k * f0
                if np.min(np.abs(harmonics - alias)) < 150:  # a real, gliding harmonic
                    continue
                near = np.abs(f - alias) < 15
                assert mag[near, i].max() < 1e-2 * mag[:, i].max(), (time_s, k)
                checked += 1
    assert checked > 50


def test_unvoiced_frames_are_silent():
    f0 = torch.zeros(1, 40)
    assert torch.all(sf_dsp.harmonic_frames(f0, 40 * HOP, SAMPLE_RATE) == 0)


# ----------------------------------------------------------------------------- loss

def test_loss_is_zero_for_identical_inputs_and_positive_otherwise():
    x = torch.randn(2, 8000)
    assert sf_dsp.multiscale_spectral_loss(x, x.clone()).item() == 0.0
    assert sf_dsp.multiscale_spectral_loss(x, 0.5 * x).item() > 0.1


def test_decoder_gru_equals_torch_gru_on_the_concatenated_input():
    """_SharedInputGRU projects the shared half of the input once per mixture; values and gradients must
    equal nn.GRU on [pitch, shared repeated per voice] (float32), and gradcheck passes (float64)."""
    torch.manual_seed(0)
    B, J, L, H = 2, 3, 7, 8
    gru = torch.nn.GRU(2 * H, H, batch_first=True)
    pitch = torch.randn(B * J, L, H, requires_grad=True)
    shared = torch.randn(B, L, H, requires_grad=True)
    weights = (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    probe = torch.randn(B * J, L, H)
    ours = _SharedInputGRU.apply(pitch, shared, *weights, J).transpose(0, 1)
    grads_ours = torch.autograd.grad((ours * probe).sum(), (pitch, shared, *weights))
    repeated = shared[:, None].expand(B, J, L, H).reshape(B * J, L, H)
    theirs = gru(torch.cat([pitch, repeated], dim=-1))[0]
    grads_theirs = torch.autograd.grad((theirs * probe).sum(), (pitch, shared, *weights))
    assert torch.allclose(ours, theirs, atol=1e-6)
    for a, b in zip(grads_ours, grads_theirs):
        assert torch.allclose(a, b, atol=1e-5)
    double = [w.detach().double().requires_grad_(True) for w in (pitch, shared, *weights)]
    assert torch.autograd.gradcheck(lambda *x: _SharedInputGRU.apply(*x, J), double)


def test_fused_mlp_equals_the_plain_layer_stack():
    """MLP recomputes its norms and activations in backward; the plain Sequential gives the same."""
    torch.manual_seed(0)
    mlp = MLP(5, 16, 3)
    x = torch.randn(4, 6, 5)
    probe = torch.randn(4, 6, 16)
    ours = mlp(x)
    theirs = torch.nn.Sequential.forward(mlp, x)
    grads = [torch.autograd.grad((y * probe).sum(), list(mlp.parameters())) for y in (ours, theirs)]
    assert torch.allclose(ours, theirs, atol=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("n_samples", [8000, 8001, 4100])
def test_closed_form_loss_gradient_matches_autograd(n_samples):
    """The loss computes its gradient by hand (closed form + the STFT's adjoint); autograd through
    torch.stft, abs and log, written out here, must agree (odd lengths exercise the padding fold)."""
    gen = torch.Generator().manual_seed(n_samples)
    target = torch.randn(3, n_samples, generator=gen, dtype=torch.float64)
    estimate = torch.randn(3, n_samples, generator=gen, dtype=torch.float64, requires_grad=True)
    sizes = (2048, 256, 64)
    expected = 0
    for n_fft in sizes:
        def mag(x):
            return torch.stft(x, n_fft, n_fft // 4, window=torch.hann_window(n_fft, dtype=torch.float64),
                              return_complex=True).abs()
        m_t, m_e = mag(target), mag(estimate)
        expected = expected + (m_t - m_e).abs().mean() + \
            (torch.log(m_t + sf_dsp.LOG_EPS) - torch.log(m_e + sf_dsp.LOG_EPS)).abs().mean()
    (grad_expected,) = torch.autograd.grad(expected, estimate)
    got = sf_dsp.multiscale_spectral_loss(target, estimate * 1.0, sizes)
    (grad_got,) = torch.autograd.grad(got * 2.0, estimate)
    assert torch.isclose(got, expected, rtol=1e-12)
    assert torch.allclose(grad_got, 2.0 * grad_expected, rtol=0, atol=1e-10 * grad_expected.abs().max())


def test_gradient_reaches_every_parameter():
    arch = Architecture(encoder_hidden=8, encoder_layers=3, embedding=8, decoder_hidden=16, mlp_layers=3,
                        n_harmonics=20)
    torch.manual_seed(0)
    model = SourceFilterNet(arch)
    n = 8 * HOP
    f0 = torch.tensor([[[220.0] * 8, [330.0] * 4 + [0.0] * 4]])
    mix = torch.randn(1, n) * 0.1
    harm, noise = sf_dsp.excitation_spectra(f0, n, SAMPLE_RATE, 20, generator=torch.Generator().manual_seed(0))
    loss = sf_dsp.multiscale_spectral_loss(mix, model(mix, f0, harm, noise).sum(1), (256, 64))
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


# ----------------------------------------------------------------------------- method

def test_unsupervised_training_loss_halves(tiny_dataset, tmp_path):
    """The issue's check: the unsupervised loss halves within a few hundred steps on a tiny set.

    Measured (seeds 0, 1, 2): 0.43, 0.25, 0.25 of the starting loss after 50 steps, 0.37-0.24 after 200.
    Every run levels off near 4 (the log-magnitude term between harmonics and in rests), so how far
    it falls depends on how high random initialisation starts; the narrower TINY network (width 32,
    lr 3e-3) starts lower and ends at 0.6 of its start. (~30 s)
    """
    params = {**TINY, "decoder_hidden": 64, "encoder_hidden": 32, "embedding": 32, "lr": 0.01,
              "steps": 200, "valid_every": 100, "patience": 100, "checkpoint_every": 100}
    method = SourceFilter(params)
    sampler = ExcerptSampler(tiny_dataset, "train", seed=0, excerpt_s=1.0, with_voices=False)
    path = method.fit(sampler, [], tmp_path / "run", seed=0)
    assert path.is_file()
    log = np.genfromtxt(tmp_path / "run" / "train_log.csv", delimiter=",", names=True, dtype=None, encoding=None)
    train = log["loss"][log["split"] == "train"].astype(float)
    assert np.median(train[-20:]) < 0.5 * np.median(train[:5]), (train[:5], train[-20:])


def test_unsupervised_never_reads_isolated_voices(tiny_dataset, tmp_path):
    class NoVoices(ExcerptSampler):
        def batch(self, size):
            mix, voices, f0 = super().batch(size)
            assert voices is None
            return mix, voices, f0

    method = SourceFilter({**TINY, "steps": 2, "valid_every": 2})
    sampler = NoVoices(tiny_dataset, "train", seed=0, excerpt_s=1.0, with_voices=False)
    valid = [load_excerpt(tiny_dataset, "song4", ("S", "A", "T", "B"), ("1",) * 4, 0, 16000)]
    for e in valid:
        e.voices = None
    method.fit(sampler, valid, tmp_path / "run", seed=0)


def test_fit_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    params = {**TINY, "steps": 6, "valid_every": 3, "checkpoint_every": 2, "supervised": True}
    valid = [load_excerpt(tiny_dataset, "song4", ("S", "A", "T", "B"), ("1",) * 4, 0, 16000)]

    def Sampler(kill_at=None):  # noqa: N802 - stands for the sampler class of a training run
        return KillableSampler(tiny_dataset, kill_at, seed=1, excerpt_s=1.0, with_voices=True)

    full = torch.load(SourceFilter(params).fit(Sampler(), valid, tmp_path / "full", seed=3), weights_only=True)
    # killed while computing step 5 (last.pt holds step 4), then restarted with the same settings
    with pytest.raises(Killed):
        SourceFilter(params).fit(Sampler(kill_at=5), valid, tmp_path / "cut", seed=3)
    assert not (tmp_path / "cut" / "model.pt").exists()
    restarted = Sampler()
    resumed = torch.load(SourceFilter(params).fit(restarted, valid, tmp_path / "cut", seed=3), weights_only=True)
    assert restarted.batches == 2  # it did resume at step 4
    assert full["step"] == resumed["step"] == 6
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_separate_shapes_outputs_and_export(tiny_dataset, tmp_path):
    trained = {**TINY, "steps": 1, "valid_every": 1}
    method = SourceFilter(trained)
    sampler = ExcerptSampler(tiny_dataset, "train", seed=0, excerpt_s=1.0, with_voices=False)
    path = method.fit(sampler, [], tmp_path / "run", seed=0)
    fresh = SourceFilter(trained)
    fresh.load(path)
    for J, parts in [(4, ("S", "A", "T", "B")), (2, ("S", "B"))]:
        e = load_excerpt(tiny_dataset, "song5", parts, ("1",) * J, 0, 32000)
        masked = fresh.separate(e.mixture, SAMPLE_RATE, e.f0)
        synth = fresh.separate(e.mixture, SAMPLE_RATE, e.f0, output="synthesis")
        assert masked.shape == synth.shape == (J, len(e.mixture))
        assert np.all(np.isfinite(masked)) and np.all(np.isfinite(synth))
        assert np.allclose(masked.sum(0), e.mixture, atol=1e-4)  # masks sum to one
        assert np.array_equal(synth, fresh.separate(e.mixture, SAMPLE_RATE, e.f0, output="synthesis"))
    exported = fresh.export_parameters(e.mixture, SAMPLE_RATE, e.f0)
    voices, with_voices = fresh.separate_with_parameters(e.mixture, SAMPLE_RATE, e.f0)  # what the harness calls
    assert np.array_equal(voices, masked)
    assert all(np.array_equal(exported[k], with_voices[k]) for k in exported)
    L = len(e.mixture) // HOP + 1
    assert exported["envelope_db"].shape == (2, 257, L)
    assert exported["lsf_hz"].shape == (2, L, 20)
    assert np.all(np.diff(exported["lsf_hz"], axis=-1) > 0)
    np.savez(tmp_path / "params.npz", **exported)
    from choirbench.evaluation.interpret import plot_parameters
    out = plot_parameters(tmp_path / "params.npz", e.voices[1], SAMPLE_RATE, tmp_path / "fig.png", voice=1)
    assert out.is_file() and out.stat().st_size > 10_000


def test_separation_equals_the_training_forward_and_the_mask_written_out(monkeypatch):
    """Separation takes its own path (inference mode, a GRU loop that keeps nothing for backward, the
    excitation of a whole batch with one noise generator per excerpt, synthesis and masking a few excerpts
    at a time); it must give what the training forward gives each excerpt alone, masked by the formula."""
    import choirbench.methods.sf as sf_module

    monkeypatch.setattr(sf_module, "SYNTH_CHUNK_EXCERPTS", 2)   # 3 excerpts: a chunk of 2 and one of 1
    method = SourceFilter({**TINY, "n_harmonics": 101})
    torch.manual_seed(0)
    method.model = SourceFilterNet(method.architecture()).eval()
    rng = np.random.default_rng(3)
    n = 16000
    x = (0.1 * rng.standard_normal((3, n))).astype(np.float32)
    f0 = np.stack([[f * (1 + 0.02 * np.sin(np.arange(n // HOP) / (5 + j + b))) for j, f in
                    enumerate((520.0, 350.0, 260.0, 130.0))] for b in range(3)]).astype(np.float32)
    f0[1, 2, 20:35] = 0.0   # a rest
    masked, params = method.separate_batch(x, SAMPLE_RATE, f0)
    synth, _ = method.separate_batch(x, SAMPLE_RATE, f0, parameters=False, output="synthesis")
    # the training path on the same batch (matrix products round differently for other batch sizes), with the
    # excitation of each excerpt made alone with the separation's noise seed
    parts = [method.make_batch(x[b:b + 1], None, f0[b:b + 1], with_references=False,
                               generator=torch.Generator().manual_seed(sf_module.SEPARATION_NOISE_SEED))
             for b in range(3)]
    mix, f0_t, harm, noise = (torch.cat([part[k] for part in parts]) for k in (0, 2, 3, 4))
    voices = method.model(mix, f0_t, harm, noise)
    assert voices.requires_grad                      # the autograd GRU, not the separation's loop
    voices = voices.detach()
    np.testing.assert_allclose(synth, voices.numpy(), atol=1e-6)
    controls = method.model.controls(mix, f0_t)
    window = torch.hann_window(2048)
    for b in range(3):
        np.testing.assert_allclose(params[b]["harmonic_amplitude"], controls["amplitude"][b].detach().numpy(),
                                   rtol=1e-6)
        specs = torch.stft(torch.cat([mix[b:b + 1], voices[b]]), 2048, 256, window=window, return_complex=True)
        masks = specs[1:].abs() / specs[1:].abs().sum(0)               # mask_power 1: magnitude ratios
        expected = torch.istft(masks * specs[0], 2048, 256, window=window, length=n)
        np.testing.assert_allclose(masked[b], expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("bad", [{"output": "both"}, {"precision": "fp16"}, {"filter_order": 19},
                                 {"mask_power": 0}, {"mask_power": -1.0}, {"noise_gain_max": 0},
                                 {"slope_corner_hz": -1}, {"slope_db_per_octave": -6},
                                 {"lsf_min_gap_hz": -1}, {"lsf_min_gap_hz": 400}])
def test_bad_knobs_are_refused_with_the_key_named(bad):
    key = next(iter(bad))
    with pytest.raises(ChoirbenchError, match=key):
        SourceFilter(bad)
