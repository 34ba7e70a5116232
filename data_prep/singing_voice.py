"""A source-filter singing voice that is *not* a harmonic oscillator bank.

Source: pitch-synchronous Liljencrants-Fant (LF) glottal-flow-derivative
pulses, shaped by Fant's Rd parameter (open quotient, skewness and return
phase all follow from it, so a louder voice gets a shorter open phase and a
flatter spectral tilt), with per-cycle jitter and shimmer and aspiration noise
gated by the glottal cycle. The source is generated at ``oversample`` x 16 kHz
and low-pass decimated, so the pulse corners do not alias.

Filter: a cascade of five (T, B: seven) time-varying formant resonators (Klatt-style,
unity gain at DC) run block-wise with carried state; formant tables per
vowel and voice type, scaled per singer; tenors and basses have F3-F5
clustered between 2.2 and 3.5 kHz (the singer's formant). Sopranos and altos tune
F1 up to the fundamental on high notes.

Second tract (``tract="nasal"``): the same cascade followed by a nasal branch
that is *not* all-pole: a nasal pole-zero pair (Klatt's FNP/FNZ) and a second
anti-resonance (the piriform sinuses), each zero a narrow-band spectral dip. A
test voice from it lies outside the all-pole family that the source-filter
separation model fits, so a model cannot win only by sharing the generator's
signal model (issue 14, item 4).

Noise: consonant bursts at syllable onsets and breaths at rests are band-
passed noise added after the tract. An optional synthetic room response is
shared by all stems of a piece.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import optimize, signal
from scipy.ndimage import uniform_filter1d

from choirbench import SAMPLE_RATE
from choirbench.data_prep.chorale_scores import CTRL_HOP, CTRL_RATE, VOWELS, Performance, SingerTraits

# ----------------------------------------------------------------------------- formant tables
# Centre frequencies (Hz) and bandwidths (Hz) of F1-F5 for sung vowels a e i o u,
# per voice type. Values follow the classic published singing-vowel measurements
# (bass/tenor F3-F5 clustered: the singer's formant).
FORMANTS = {
    "S": {"a": ([800, 1150, 2900, 3900, 4950], [80, 90, 120, 130, 140]),
          "e": ([350, 2000, 2800, 3600, 4950], [60, 100, 120, 150, 200]),
          "i": ([270, 2140, 2950, 3900, 4950], [60, 90, 100, 120, 120]),
          "o": ([450, 800, 2830, 3800, 4950], [70, 80, 100, 130, 135]),
          "u": ([325, 700, 2700, 3800, 4950], [50, 60, 170, 180, 200])},
    "A": {"a": ([800, 1150, 2800, 3500, 4950], [80, 90, 120, 130, 140]),
          "e": ([400, 1600, 2700, 3300, 4950], [60, 80, 120, 150, 200]),
          "i": ([350, 1700, 2700, 3700, 4950], [50, 100, 120, 150, 200]),
          "o": ([450, 800, 2830, 3500, 4950], [70, 80, 100, 130, 135]),
          "u": ([325, 700, 2530, 3500, 4950], [50, 60, 170, 180, 200])},
    "T": {"a": ([650, 1080, 2650, 2900, 3250], [80, 90, 120, 130, 140]),
          "e": ([400, 1700, 2600, 3200, 3580], [70, 80, 100, 120, 120]),
          "i": ([290, 1870, 2800, 3250, 3540], [40, 90, 100, 120, 120]),
          "o": ([400, 800, 2600, 2800, 3000], [40, 80, 100, 120, 120]),
          "u": ([350, 600, 2700, 2900, 3300], [40, 60, 100, 120, 120])},
    "B": {"a": ([600, 1040, 2250, 2450, 2750], [60, 70, 110, 120, 130]),
          "e": ([400, 1620, 2400, 2800, 3100], [40, 80, 100, 120, 120]),
          "i": ([250, 1750, 2600, 3050, 3340], [60, 90, 100, 120, 120]),
          "o": ([400, 750, 2400, 2600, 2900], [40, 80, 100, 120, 120]),
          "u": ([350, 600, 2400, 2675, 2950], [40, 80, 100, 120, 120])},
}
MIN_BANDWIDTH_HZ = 50.0
"""Very narrow tabulated bandwidths ring unnaturally in a cascade; floor them."""


HIGHER_FORMANTS_HZ = (1000.0, 2000.0)
"""F6, F7 above F5 for tenors and basses (scaled with the tract): their tabulated F5 is below
3.5 kHz, and a five-pole cascade then falls off far too steeply above it (the problem Klatt's
'higher-pole correction' addresses), so the voice sounds muffled. Sopranos' and altos' F5
(~5 kHz) already covers the band."""
HIGHER_BANDWIDTHS_HZ = (250.0, 350.0)
MAX_FORMANT_HZ = 7200.0


def singer_formants(part: str, traits: SingerTraits) -> tuple[np.ndarray, np.ndarray]:
    """[5 vowels, K] formant frequencies and bandwidths of one singer (F1-F5 per vowel; F6-F7 for T/B)."""
    freqs = np.array([FORMANTS[part][v][0] for v in VOWELS], dtype=float)
    bws = np.array([FORMANTS[part][v][1] for v in VOWELS], dtype=float)
    freqs = freqs * traits.formant_dev / traits.tract_scale
    if part in ("T", "B"):
        # keep the F3-F5 cluster together: spread around its centre by the singer's ring_scale
        centre = freqs[:, 2:5].mean(axis=1, keepdims=True)
        freqs[:, 2:5] = centre + (freqs[:, 2:5] - centre) * traits.ring_scale
    freqs[:, 1:] = np.maximum(freqs[:, 1:], freqs[:, :-1] + 150.0)   # keep order after scaling
    bws = np.maximum(bws * traits.bandwidth_scale, MIN_BANDWIDTH_HZ)
    if part in ("S", "A"):
        return freqs, bws
    top = freqs[:, 4:5].max()
    higher = np.minimum(top + np.array(HIGHER_FORMANTS_HZ) / traits.tract_scale, MAX_FORMANT_HZ)
    freqs = np.hstack([freqs, np.broadcast_to(higher, (len(VOWELS), 2))])
    bws = np.hstack([bws, np.broadcast_to(np.array(HIGHER_BANDWIDTHS_HZ) * traits.bandwidth_scale,
                                          (len(VOWELS), 2))])
    return freqs, bws


# ----------------------------------------------------------------------------- LF glottal pulse

RD_GRID = np.linspace(0.3, 2.7, 121)


@functools.lru_cache(maxsize=1)
def lf_table() -> np.ndarray:
    """LF parameters per Rd on RD_GRID: columns tp, te, ta, alpha, epsilon, E0 (T0 = 1, Ee = 1).

    Fant's (1995) Rd regression gives Ra, Rk, Rg; epsilon solves the return-
    phase equation and alpha makes the flow return to zero over the cycle.
    """
    rows = []
    for rd in RD_GRID:
        ra = (-1.0 + 4.8 * rd) / 100.0
        rk = (22.4 + 11.8 * rd) / 100.0
        rg = rk / (4.0 * (0.11 * rd / (0.5 + 1.2 * rk) - ra))
        tp = 1.0 / (2.0 * rg)
        te = min(tp * (1.0 + rk), 0.97)
        ta = max(ra, 1e-4)
        eps = 1.0 / ta
        for _ in range(100):
            eps = (1.0 - np.exp(-eps * (1.0 - te))) / ta
        omega = np.pi / tp
        ret_area = -(1.0 / (eps * ta)) * ((1.0 - np.exp(-eps * (1.0 - te))) / eps
                                         - (1.0 - te) * np.exp(-eps * (1.0 - te)))

        def net_flow(alpha):
            e0 = -1.0 / (np.exp(alpha * te) * np.sin(omega * te))
            integral = (np.exp(alpha * te) * (alpha * np.sin(omega * te) - omega * np.cos(omega * te)) + omega) / (
                alpha ** 2 + omega ** 2)
            return e0 * integral + ret_area

        alpha = optimize.brentq(net_flow, -20.0, 200.0)
        e0 = -1.0 / (np.exp(alpha * te) * np.sin(omega * te))
        rows.append((tp, te, ta, alpha, eps, e0))
    return np.array(rows)


def lf_pulses(frac: np.ndarray, params: np.ndarray) -> np.ndarray:
    """LF flow derivative at cycle phase ``frac`` in [0, 1) with per-sample parameter rows."""
    tp, te, ta, alpha, eps, e0 = params.T
    open_phase = e0 * np.exp(alpha * np.minimum(frac, te)) * np.sin(np.pi * np.minimum(frac, te) / tp)
    closing = -(np.exp(-eps * np.maximum(frac - te, 0.0)) - np.exp(-eps * (1.0 - te))) / (eps * ta)
    return np.where(frac <= te, open_phase, closing)


WAVETABLE_SIZE = 2048
CHUNK = 16384
"""Output samples per chunk of oversampled source generation."""


@functools.lru_cache(maxsize=1)
def lf_wavetables() -> tuple[np.ndarray, np.ndarray]:
    """(pulse, open-phase window) tables [len(RD_GRID), WAVETABLE_SIZE + 1], one LF cycle per row.

    Reading a finely sampled cycle by phase is much cheaper than evaluating
    exp/sin per output sample; the extra column wraps around for interpolation.
    """
    frac = np.arange(WAVETABLE_SIZE + 1) / WAVETABLE_SIZE
    frac[-1] = 0.0
    table = lf_table()
    pulses = np.stack([lf_pulses(frac, np.broadcast_to(row, (len(frac), 6))) for row in table])
    te = table[:, 1:2]
    window = np.where(frac < te, np.sin(np.pi * frac / te) ** 2, 0.0)
    return pulses, window


@functools.lru_cache(maxsize=4)
def decimation_filter(oversample: int, cutoff_hz: float = 7300.0, taps_per_phase: int = 24) -> np.ndarray:
    """Low-pass FIR for the oversampled source; stops well below 8 kHz so nothing folds back."""
    numtaps = taps_per_phase * oversample + 1
    return signal.firwin(numtaps, cutoff_hz, window=("kaiser", 8.0), fs=SAMPLE_RATE * oversample)


def glottal_source(f0_ctrl: np.ndarray, rd_ctrl: np.ndarray, breath_ctrl: np.ndarray, n_samples: int,
                   traits: SingerTraits, rng: np.random.Generator, *, oversample: int = 8,
                   jitter: bool = True) -> np.ndarray:
    """LF pulse train plus cycle-gated aspiration noise, at 16 kHz.

    Pitch-synchronous: each glottal cycle takes its Rd (hence open quotient
    and tilt), shimmer and noise level from the control value at the cycle's
    start, and jitter changes every cycle's length. Pulses are read from the
    LF wavetables at ``oversample`` x 16 kHz and low-pass decimated.
    ``breath_ctrl`` is the aspiration level in dB re the pulse's negative peak.
    """
    n_ctrl = len(f0_ctrl)
    t_ctrl = np.arange(n_ctrl) / CTRL_RATE
    # glottal phase (cycles) at control rate; jitter scales each cycle's frequency
    phase_ctrl = np.r_[0.0, np.cumsum(f0_ctrl[:-1])] / CTRL_RATE
    if jitter:
        cycles = phase_ctrl.astype(np.int64)
        limit = 3.0 * traits.jitter
        perturb = 1.0 + np.clip(rng.normal(0.0, traits.jitter, cycles[-1] + 2), -limit, limit)
        phase_ctrl = np.r_[0.0, np.cumsum(f0_ctrl[:-1] * perturb[cycles[:-1]])] / CTRL_RATE
    n_cycles = int(phase_ctrl[-1]) + 1
    cycle_start_t = np.interp(np.arange(n_cycles), phase_ctrl, t_ctrl)
    rd = np.interp(cycle_start_t, t_ctrl, rd_ctrl)
    row = np.clip(np.round((rd - RD_GRID[0]) / (RD_GRID[1] - RD_GRID[0])), 0, len(RD_GRID) - 1).astype(np.int64)
    shimmer = 10.0 ** (rng.normal(0.0, traits.shimmer_db, n_cycles) / 20.0) if jitter else np.ones(n_cycles)
    noise_gain = 10.0 ** (np.interp(cycle_start_t, t_ctrl, breath_ctrl) / 20.0)
    pulses_tab, window_tab = lf_wavetables()
    width = WAVETABLE_SIZE + 1

    def read(table, phase, weights):
        cycle = phase.astype(np.int64)
        pos = (phase - cycle) * WAVETABLE_SIZE
        idx = pos.astype(np.int64)
        frac = pos - idx
        flat = row[cycle] * width + idx
        flat_table = table.ravel()
        values = flat_table[flat]
        values += frac * (flat_table[flat + 1] - values)
        return values * weights[cycle]

    fs_os = SAMPLE_RATE * oversample
    fir = decimation_filter(oversample)
    margin = len(fir) // (2 * oversample) + 2      # output samples the decimator reaches across a chunk edge
    source = np.empty(n_samples)
    for a in range(0, n_samples, CHUNK):           # chunks keep the oversampled arrays small (cache, memory)
        b = min(a + CHUNK, n_samples)
        lo, hi = max(a - margin, 0), min(b + margin, n_samples)
        phase_os = np.interp(np.arange(lo * oversample, hi * oversample) / fs_os, t_ctrl, phase_ctrl)
        pulses = read(pulses_tab, phase_os, shimmer)
        source[a:b] = signal.resample_poly(pulses, 1, oversample, window=fir)[a - lo:b - lo]
    # aspiration: turbulence while the glottis is open, strongest near peak flow (noise needs no oversampling)
    phase = np.interp(np.arange(n_samples) / SAMPLE_RATE, t_ctrl, phase_ctrl)
    gate = read(window_tab, phase, noise_gain) + 0.15 * noise_gain[phase.astype(np.int64)]
    source += gate * rng.standard_normal(n_samples)
    return source


# ----------------------------------------------------------------------------- vocal tract

FORMANT_BLOCK = 64
"""Samples per block of constant resonator coefficients (4 ms)."""


def formant_cascade(x: np.ndarray, freqs: np.ndarray, bws: np.ndarray, block: int = FORMANT_BLOCK) -> np.ndarray:
    """Run ``x`` through resonators whose F/B change every ``block`` samples ([n_blocks, K] each).

    Each resonator has unity gain at DC, as in Klatt's cascade branch, so the
    relative formant levels come out of the cascade itself. Filter state is
    carried across blocks, so coefficient changes do not click.
    """
    r = np.exp(-np.pi * bws / SAMPLE_RATE)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freqs / SAMPLE_RATE)
    a2 = r * r
    b0 = 1.0 + a1 + a2
    n_blocks, k = freqs.shape
    sos = np.zeros((n_blocks, k, 6))
    sos[:, :, 0] = b0
    sos[:, :, 3] = 1.0
    sos[:, :, 4] = a1
    sos[:, :, 5] = a2
    n = len(x)
    padded = np.zeros(n_blocks * block)
    padded[:n] = x
    blocks = padded.reshape(n_blocks, block)
    zi = np.zeros((1, k, 2))
    for b in range(n_blocks):
        _sosfilt_inplace(np.ascontiguousarray(sos[b]), blocks[b:b + 1], zi)
    return padded[:n]


def _sosfilt_public(sos, x, zi):
    x[...], zi[0] = signal.sosfilt(sos, x[0], zi=zi[0])


try:  # scipy's compiled kernel without the per-call checks (~200x less overhead per block)
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_inplace
except ImportError:  # pragma: no cover - other scipy layouts
    _sosfilt_inplace = _sosfilt_public


def tract_trajectories(perf: Performance, part: str, traits: SingerTraits, n_blocks: int,
                       transition_s: float = 0.07) -> tuple[np.ndarray, np.ndarray]:
    """Formant frequencies/bandwidths per block: vowel targets, smoothed transitions, F1 tuning."""
    freqs, bws = singer_formants(part, traits)
    size = max(int(transition_s * CTRL_RATE), 1)
    f_ctrl = uniform_filter1d(freqs[perf.vowel], size=size, axis=0)
    b_ctrl = uniform_filter1d(bws[perf.vowel], size=size, axis=0)
    centres = (np.arange(n_blocks) * FORMANT_BLOCK + FORMANT_BLOCK // 2) // CTRL_HOP
    centres = np.minimum(centres, len(perf.f0_hz) - 1)
    f_blk, b_blk = f_ctrl[centres], b_ctrl[centres]
    if part in ("S", "A"):
        # formant tuning: F1 follows the fundamental when the note rises above it
        f0 = perf.f0_hz[centres]
        f_blk[:, 0] = np.maximum(f_blk[:, 0], 1.1 * f0)
        f_blk[:, 1] = np.maximum(f_blk[:, 1], f_blk[:, 0] + 250.0)
    return f_blk, b_blk


TRACTS = ("cascade", "nasal")
NASAL_POLE_HZ, NASAL_POLE_BW_HZ = 270.0, 100.0
NASAL_ZERO_HZ, NASAL_ZERO_BW_HZ = (450.0, 1100.0), 80.0
"""Klatt's nasal pole near 270 Hz; the nasal zero moves with velum opening (drawn per singer in this range)."""
SINUS_ZERO_HZ, SINUS_ZERO_BW_HZ = (1800.0, 2800.0), 100.0
"""A second anti-resonance from a side branch of the tract (piriform sinuses), drawn per singer."""


def _resonance(freq_hz: float, bw_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Second-order polynomial [1, a1, a2] of a pole or zero pair at ``freq_hz`` and its DC gain."""
    r = np.exp(-np.pi * bw_hz / SAMPLE_RATE)
    poly = np.array([1.0, -2.0 * r * np.cos(2.0 * np.pi * freq_hz / SAMPLE_RATE), r * r])
    return poly, poly.sum()


def nasal_sos(rng: np.random.Generator) -> np.ndarray:
    """The nasal branch as second-order sections [3, 6], unity gain at DC: pole pair, nasal zero, sinus zero.

    Zeros are numerator sections, so the branch has spectral zeros at the drawn
    frequencies (|H| dips by about 20-30 dB there): no all-pole filter reproduces it.
    """
    zero_hz = rng.uniform(*NASAL_ZERO_HZ)
    sinus_hz = rng.uniform(*SINUS_ZERO_HZ)
    pole, pole_dc = _resonance(NASAL_POLE_HZ, NASAL_POLE_BW_HZ)
    sections = [np.concatenate([[pole_dc, 0.0, 0.0], pole])]
    for freq, bw in ((zero_hz, NASAL_ZERO_BW_HZ), (sinus_hz, SINUS_ZERO_BW_HZ)):
        zero, zero_dc = _resonance(freq, bw)
        sections.append(np.concatenate([zero / zero_dc, [1.0, 0.0, 0.0]]))
    return np.array(sections)


# ----------------------------------------------------------------------------- noises

_NOISE_BANDS = {"s": (3800.0, 7600.0), "sh": (1800.0, 5500.0), "f": (1000.0, 7000.0), "h": (400.0, 3500.0),
                "plosive": (800.0, 6000.0), "breath": (300.0, 4500.0)}
_NOISE_LEVEL_DB = {"s": -10.0, "sh": -12.0, "f": -24.0, "h": -22.0, "plosive": -14.0, "breath": -30.0}


@functools.lru_cache(maxsize=None)
def _band_sos(kind: str) -> np.ndarray:
    lo, hi = _NOISE_BANDS[kind]
    return signal.butter(2, [lo, hi], btype="bandpass", fs=SAMPLE_RATE, output="sos")


def add_noise_events(y: np.ndarray, events: list[tuple[float, float, str]], ref_rms: float,
                     rng: np.random.Generator) -> None:
    """Add band-passed noise bursts (consonants, breaths) in place, levels relative to ``ref_rms``."""
    for start_s, dur_s, kind in events:
        a = int(round(start_s * SAMPLE_RATE))
        n = int(round(dur_s * SAMPLE_RATE))
        if n <= 4 or a < 0 or a + n > len(y):
            continue
        x = np.arange(n) / n
        if kind == "plosive":   # burst, then a short aspiration
            env = np.exp(-x * 6.0) * _ramp_up(x, 0.05)
        else:
            env = np.sin(np.pi * x) ** 1.5
        noise = signal.sosfilt(_band_sos(kind), rng.standard_normal(n + 256))[256:]
        noise /= max(noise.std(), 1e-12)
        level = ref_rms * 10.0 ** ((_NOISE_LEVEL_DB[kind] + rng.uniform(-3, 3)) / 20.0)
        y[a:a + n] += level * env * noise


def _ramp_up(x: np.ndarray, width: float) -> np.ndarray:
    return np.clip(x / width, 0.0, 1.0)


# ----------------------------------------------------------------------------- one voice

def rd_for_loudness(traits: SingerTraits, loudness_db):
    """Fant's Rd from loudness: louder -> pressed phonation (small Rd: short open phase, flat tilt)."""
    return np.clip(traits.rd_base - traits.rd_per_db * np.asarray(loudness_db), 0.4, 2.5)


TARGET_RMS = 10.0 ** (-26.0 / 20.0)
"""Voiced RMS of a stem at the singer's nominal level (-26 dBFS): four parts sum well below 1."""


def render_voice(perf: Performance, part: str, traits: SingerTraits, rng: np.random.Generator, n_samples: int,
                 *, oversample: int = 8, noises: bool = True, jitter: bool = True,
                 noise_floor_db: float | None = -60.0, tract: str = "cascade",
                 tract_rng: np.random.Generator | None = None) -> np.ndarray:
    """Sing one performance: LF source -> amplitude -> formant cascade -> level -> noises. float32 [n_samples].

    ``tract="nasal"`` adds the pole-zero nasal branch of :func:`nasal_sos` after the
    cascade, drawn from ``tract_rng`` (a stream of its own, so the source and the
    performance stay those of the all-pole rendering).

    ``noise_floor_db`` (re the voice's RMS) adds a microphone-like white floor:
    without it, pitch trackers lock onto the exponentially decaying formant
    ringing after every note for hundreds of milliseconds, which no recording shows.
    """
    n_ctrl = len(perf.f0_hz)
    rd = rd_for_loudness(traits, perf.loudness_db)
    breath = traits.breathiness_db - 0.8 * perf.loudness_db       # softer -> breathier
    if not noises:
        breath = np.full(n_ctrl, -200.0)
    source = glottal_source(perf.f0_hz, rd, breath, n_samples, traits, rng, oversample=oversample,
                            jitter=jitter)
    t_ctrl = np.arange(n_ctrl) / CTRL_RATE
    t = np.arange(n_samples) / SAMPLE_RATE
    amp_ctrl = perf.gate * 10.0 ** (perf.loudness_db / 20.0)
    source *= np.interp(t, t_ctrl, amp_ctrl)
    n_blocks = -(-n_samples // FORMANT_BLOCK)
    freqs, bws = tract_trajectories(perf, part, traits, n_blocks)
    y = formant_cascade(source, freqs, bws)
    if tract == "nasal":
        y = signal.sosfilt(nasal_sos(tract_rng if tract_rng is not None else np.random.default_rng(0)), y)
    elif tract != "cascade":
        raise ValueError(f"tract must be one of {TRACTS}, got {tract!r}")
    gate = np.interp(t, t_ctrl, perf.gate)
    voiced = gate > 0.5
    rms = float(np.sqrt(np.mean(y[voiced] ** 2))) if voiced.any() else 1.0
    y *= TARGET_RMS * 10.0 ** (traits.level_db / 20.0) / max(rms, 1e-12)
    if noises:
        ref = TARGET_RMS * 10.0 ** (traits.level_db / 20.0)
        events = list(perf.consonants) + [(s, d, "breath") for s, d in perf.breaths]
        add_noise_events(y, events, ref, rng)
    if noise_floor_db is not None:
        y += TARGET_RMS * 10.0 ** (noise_floor_db / 20.0) * rng.standard_normal(n_samples)
    return y.astype(np.float32)


# ----------------------------------------------------------------------------- room

def room_response(rng: np.random.Generator, *, rt60_range=(0.3, 1.2), drr_db_range=(6.0, 15.0)) -> np.ndarray:
    """A synthetic room impulse response: direct sound, a few early reflections, a diffuse
    exponentially decaying tail whose high band decays faster (air and wall absorption).

    ``drr_db_range``: direct-to-reverberant energy ratio (early reflections and tail
    together); the default suits close microphones, one per singer.
    """
    rt60 = rng.uniform(*rt60_range)
    n = int(min(1.3 * rt60, 1.6) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    bands = [signal.butter(2, 700.0, "lowpass", fs=SAMPLE_RATE, output="sos"),
             signal.butter(2, [700.0, 3500.0], "bandpass", fs=SAMPLE_RATE, output="sos"),
             signal.butter(2, 3500.0, "highpass", fs=SAMPLE_RATE, output="sos")]
    tail = np.zeros(n)
    for sos, scale in zip(bands, (1.15, 1.0, 0.6)):
        tail += signal.sosfilt(sos, rng.standard_normal(n)) * np.exp(-6.91 * t / (rt60 * scale))
    predelay = int(rng.uniform(0.008, 0.02) * SAMPLE_RATE)
    tail[:predelay] = 0.0
    tail[predelay:predelay + 160] *= np.linspace(0, 1, min(160, n - predelay))
    early = np.zeros(n)
    for delay in rng.uniform(0.003, 0.035, 6):
        early[int(delay * SAMPLE_RATE)] += rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0])
    early *= np.sqrt(rng.uniform(0.2, 0.5) / np.sum(early ** 2))   # share of the reflected energy
    reflected = early + tail / np.sqrt(max(np.sum(tail ** 2), 1e-12))
    drr = 10.0 ** (rng.uniform(*drr_db_range) / 10.0)
    ir = reflected * np.sqrt(1.0 / drr / np.sum(reflected ** 2))
    ir[0] = 1.0                                                      # direct sound
    return ir / np.sqrt(np.sum(ir ** 2))


def apply_room(y: np.ndarray, ir: np.ndarray) -> np.ndarray:
    return signal.oaconvolve(y, ir)[: len(y)].astype(np.float32)
