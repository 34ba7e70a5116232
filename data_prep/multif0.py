"""Multi-F0 salience from a mixture: the Late/Deep CNN of Cuesta, McFee & Gómez (ISMIR 2020).

Cuesta, McFee & Gómez, "Multiple F0 estimation in vocal ensembles using
convolutional neural networks", ISMIR 2020, model "Late/Deep" (their model 3),
run with the trained weights shipped in :mod:`choirbench.data_prep.pretrained`.

Input (Sec. 3.1 of the paper; the features of its public code, pumpp 0.5
``HCQTPhaseDiff`` with librosa 0.8): the audio at 22 050 Hz; one constant-Q
transform per harmonic h = 1..5 with f_min = h * 32.7 Hz, 60 bins per octave,
360 bins, hop 256 samples (11.6 ms), ``len // 256`` frames;

* magnitude: ``amplitude_to_db(|C_h|, ref=max |C_h|)`` per harmonic (0 dB at that
  harmonic's loudest bin over the whole recording, floor -80 dB), no further scaling;
* phase differential: the phase of C_h unwrapped and differenced along *time*
  (frame 0 keeps its raw phase), i.e. the frame-to-frame phase advance wrapped to
  [-pi, pi].

Network (channels = feature maps, image = 360 frequency bins x frames; Keras
"same" padding, which for an even kernel pads one more at the end): two branches
(magnitude, phase differential) of BN -> [Conv 5x5 -> ReLU -> BN] x 4 (16, 32, 32,
32 channels) -> [Conv 70x3 -> ReLU -> BN] x 2 (32 channels, 70 bins = 14
semitones), concatenated (64) -> [Conv 3x3 (64) -> ReLU -> BN] x 2 -> Conv 360x1
(8) -> ReLU -> BN -> Conv 1x1 (1) -> sigmoid. Output: salience in [0, 1] per
(bin, frame), bin k at 32.7 * 2**(k / 60) Hz (20 cents per bin).

Peaks (the paper's post-processing, ``pitch_activations_to_mf0`` of its code):
local maxima along frequency whose salience is >= a threshold, 0.5 for Late/Deep.

Everything here runs in blocks of frames so that a long recording needs bounded
memory: the constant-Q filters are at most ~2.6 s long and the network sees
+-12 frames of time context, so each block is computed with a margin of audio and
frames around it and the blocks join without seams (to float rounding). The dB
reference is the maximum over the whole recording, so a recording longer than one
block takes a first CQT pass for it. Deliberate deviation: a recording with no
CQT magnitude above the -100 dB floor gets an all-zero map (the original would
feed the network a flat 0 dB image).

Speed: ``impl="fast"`` (default) runs channels last, computes the 70x3 and
360x1 convolutions (85% of the ~0.9 GFLOP per frame of the straightforward port)
as FFT convolutions along frequency, the products as real matrix products
accumulated in place, and folds each ReLU + BN into the convolution before it
(BN(ReLU(z)) = max(scale z + shift, shift) for scale >= 0: one in-place pass);
``impl="direct"`` is the straightforward conv2d port, kept as the reference the
fast path is tested against (equal to ~3e-6). Measured by benchmarks/bench_multif0.py.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from choirbench import ChoirbenchError
from choirbench.memory import mmap_threshold, trim_heap

SR = 22_050
"""Sampling rate of the HCQT (Hz)."""
HOP = 256
"""HCQT hop (samples at 22 050 Hz, 11.6 ms)."""
FMIN_HZ = 32.7
BINS_PER_OCTAVE = 60
N_BINS = 360
HARMONICS = (1, 2, 3, 4, 5)
AMIN = 1e-5
"""Magnitude floor of librosa's amplitude_to_db."""
TOP_DB = 80.0
DEFAULT_THRESHOLD = 0.5
"""Peak threshold the original code uses for Late/Deep (``predict_on_audio.py``, model3)."""
DEFAULT_BLOCK_S = 45.0
NET_CONTEXT = 12
"""Frames of time context one output frame depends on (4 convs 5 wide, 2 of 3, 2 of 3: 8+2+2)."""
CQT_MARGIN = 192
"""Frames of audio kept on each side of a CQT block: > half the longest filter (~1.3 s at 32.7 Hz)."""
NET_CHUNK = 256
"""Output frames per network call (memory: ~64 x 360 x 280 float32 per activation)."""
BN_EPS = 1e-3
LONG_MMAP_MB = 4
"""glibc mmap threshold (MB) while a recording of several blocks runs: the network's buffers (6-52 MB,
allocated and freed every chunk) then go back to the OS when freed instead of fragmenting the heap,
which held ~190 MB more than was live (~125 MB) after a few chunks at glibc's dynamic threshold;
the page faults cost a few % of the network's time (benchmarks/bench_multif0.py)."""


@dataclass(frozen=True)
class Salience:
    """A multi-F0 salience map.

    times_s:  [T] frame centres in seconds (frame t at t * 256 / 22050 s).
    freqs_hz: [360] bin frequencies, 32.7 * 2**(k / 60) Hz.
    map:      [360, T] float32 salience in [0, 1] (bins x frames).
    """

    times_s: np.ndarray
    freqs_hz: np.ndarray
    map: np.ndarray


def hcqt_frequencies() -> np.ndarray:
    """[360] centre frequency (Hz) of each HCQT bin of harmonic 1: 32.7 * 2**(k / 60)."""
    return FMIN_HZ * 2.0 ** (np.arange(N_BINS) / BINS_PER_OCTAVE)


def frame_times(n_frames: int) -> np.ndarray:
    """[T] centre (s) of each HCQT frame."""
    return np.arange(n_frames) * HOP / SR


# ----------------------------------------------------------------------------- input

def _prepare_audio(audio, sr) -> np.ndarray:
    """The recording as float32 at 22 050 Hz; ChoirbenchError (one line) for anything unusable."""
    import librosa

    try:
        sr_value = float(sr)
    except (TypeError, ValueError):
        raise ChoirbenchError(f"multi-F0: sampling rate {sr!r} is not a number") from None
    if not math.isfinite(sr_value) or sr_value <= 0 or sr_value != int(sr_value):
        raise ChoirbenchError(f"multi-F0: sampling rate {sr!r} must be a positive whole number of Hz")
    sr = int(sr_value)
    array = np.asarray(audio)
    if array.ndim != 1:
        raise ChoirbenchError(f"multi-F0: expected mono audio (1-D samples), got an array of shape {array.shape}; "
                              "mix the channels down first")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ChoirbenchError(f"multi-F0: audio samples must be real numbers, got dtype {array.dtype}")
    if array.size == 0:
        raise ChoirbenchError("multi-F0: the audio is empty")
    y = array.astype(np.float32, copy=False)  # read only below: no copy of a long recording
    if not np.all(np.isfinite(y)):
        raise ChoirbenchError("multi-F0: the audio contains NaN or infinite samples")
    if sr != SR:
        if len(y) * SR / sr < HOP:
            raise ChoirbenchError(_too_short(len(y), sr))
        y = librosa.resample(y, orig_sr=sr, target_sr=SR).astype(np.float32, copy=False)  # soxr keeps float32
    if len(y) < HOP:
        raise ChoirbenchError(_too_short(len(array), sr))
    return np.ascontiguousarray(y)


def _too_short(n: int, sr: int) -> str:
    return (f"multi-F0: the audio ({n} samples at {sr} Hz, {n / sr * 1000:.1f} ms) is shorter than one HCQT frame "
            f"({HOP / SR * 1000:.1f} ms)")


# ----------------------------------------------------------------------------- HCQT

def _cqt_frames(y: np.ndarray, first: int, stop: int, each, *, workers: int = 1, harmonics=HARMONICS) -> None:
    """Call ``each(i, C)`` with the complex CQT C [360, stop - first] of frames first..stop-1 of the whole
    recording ``y`` for harmonic ``harmonics[i]``, one harmonic at a time (never all five CQTs at once).

    Computed on the audio of those frames plus CQT_MARGIN frames on each side (clipped to the
    recording), so interior frames equal those of one CQT over all of ``y``. librosa 0.8 (the
    original's) padded with reflection; librosa >= 0.9 pads with zeros unless told.
    ``workers``: harmonics computed at once in threads (librosa's FFTs, resampling and sparse
    products release the GIL; each harmonic is the same call either way, so the same numbers);
    ``each`` must then only write to its own harmonic's outputs.
    """
    import librosa

    lo = max(0, first - CQT_MARGIN)
    end = min(len(y), (stop + CQT_MARGIN) * HOP)
    segment = y[lo * HOP: end]

    def one(i: int) -> None:
        C = librosa.cqt(segment, sr=SR, hop_length=HOP, fmin=FMIN_HZ * harmonics[i], n_bins=N_BINS,
                        bins_per_octave=BINS_PER_OCTAVE, pad_mode="reflect")
        each(i, C[:, first - lo: stop - lo])

    with warnings.catch_warnings():  # short clips: librosa warns that its FFT exceeds the signal, as 0.8 did
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(workers, len(harmonics))) as pool:
                list(pool.map(one, range(len(harmonics))))  # list(): re-raises a worker's error here
        else:
            for i in range(len(harmonics)):
                one(i)


def _peak_magnitudes(y: np.ndarray, first: int, stop: int, workers: int = 1) -> np.ndarray:
    """[H] float32: each harmonic's maximum CQT magnitude over frames first..stop-1 (the dB reference pass)."""
    peak = np.zeros(len(HARMONICS), dtype=np.float32)
    _cqt_frames(y, first, stop, lambda i, C: peak.__setitem__(i, np.abs(C).max()), workers=workers)
    return peak


def _raw_features(y: np.ndarray, first: int, stop: int, workers: int = 1):
    """(level_db [H, 360, n], phase_diff [H, 360, n], peak [H]) float32 of frames first..stop-1.

    level_db is 20 log10(max(AMIN, |C|)) before the reference (:func:`_apply_reference` finishes it);
    frame 0 of the phase differential keeps its raw phase, as the original does for the first
    frame of a recording (callers drop it when ``first`` is not the recording's first frame); peak
    is each harmonic's maximum |C| over these frames. Made harmonic by harmonic from each CQT, so
    the complex HCQT of a block [H, 360, n] (twice the features' size) is never held.
    """
    n = stop - first
    level = np.empty((len(HARMONICS), N_BINS, n), dtype=np.float32)
    dphase = np.empty((len(HARMONICS), N_BINS, n), dtype=np.float32)
    peak = np.zeros(len(HARMONICS), dtype=np.float32)

    def each(h: int, C: np.ndarray) -> None:
        magnitude = np.abs(C)
        peak[h] = magnitude.max()
        level[h] = 20.0 * np.log10(np.maximum(AMIN, magnitude))
        del magnitude
        phase = np.angle(C)
        dphase[h, :, 0] = phase[:, 0]
        dphase[h, :, 1:] = np.diff(phase, axis=-1)
        _wrap(dphase[h, :, 1:])

    _cqt_frames(y, first, stop, each, workers=workers)
    return level, dphase, peak


def _reference_db(peak_abs: np.ndarray) -> np.ndarray:
    """[H] dB of each harmonic's reference (its maximum magnitude), floored like amplitude_to_db."""
    return 20.0 * np.log10(np.maximum(AMIN, peak_abs.astype(np.float64)))


def _apply_reference(level: np.ndarray, ref_db: np.ndarray) -> np.ndarray:
    """In place: level_db [H, 360, n] -> amplitude_to_db(|C|, ref=max): minus each harmonic's reference, floor -80 dB."""
    for h in range(len(level)):
        level[h] -= ref_db[h].astype(np.float32)
    np.maximum(level, -TOP_DB, out=level)
    return level


def _wrap(x: np.ndarray) -> None:
    """Wrap phase differences into [-pi, pi] in place: what diff(unwrap(phase)) gives (numpy's rule)."""
    wrapped = np.mod(x + np.pi, 2 * np.pi) - np.pi
    wrapped[(wrapped == -np.pi) & (x > 0)] = np.pi
    small = np.abs(x) < np.pi  # unwrap leaves steps below pi untouched
    x[...] = np.where(small, x, wrapped)


def hcqt(audio, sr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harmonic CQT magnitude and phase differential of a mono recording, as the original computes them.

    Parameters: audio [n] samples (any real dtype), sr its rate in Hz (resampled to 22 050 Hz).
    Returns ``(magnitude_db [5, 360, T], phase_diff [5, 360, T], times_s [T])``, float32, with
    T = n_22050 // 256: magnitude in dB relative to each harmonic's maximum (floor -80 dB), phase
    differential along time in radians. Raises ChoirbenchError for empty, too short (< one
    frame), non-finite or multi-channel audio.
    """
    y = _prepare_audio(audio, sr)
    n_frames = len(y) // HOP
    level, dphase, peak = _raw_features(y, 0, n_frames)
    return _apply_reference(level, _reference_db(peak)), dphase, frame_times(n_frames)


# ----------------------------------------------------------------------------- network

def _torch():
    import torch
    return torch


def _same_pad(k: int) -> tuple[int, int]:
    """Keras/TensorFlow "same" padding of a kernel of size k: the odd pad goes at the end."""
    return (k - 1) // 2, k // 2


class _Conv:
    """One Keras Conv2D with "same" zero padding, in two implementations that agree to float rounding.

    ``direct(x)``: x [1, C, F, T] -> [1, O, F, T] by torch's conv2d: the straightforward port, the
    reference. ``fast(x)``: x [F, T, C] (channels last) -> [F, T, O]: kernels tall along frequency
    (70 or 360 bins) as an FFT convolution along frequency (the few time taps as batched matrix
    products per frequency bin, accumulated in place), a 1x1 kernel as a matrix product, small odd
    kernels by conv2d in channels-last memory. The FFT is long enough (>= F + kh - 1) that no output
    wraps around: zero padding exact.

    ``then``: (scale [O], shift [O]) of the batch norm that follows this convolution's ReLU, all
    scales >= 0. The fast path then returns BN(ReLU(z)) itself, as max(scale z + shift, shift)
    with scale and shift folded into its kernel and bias: one in-place pass over the output
    instead of a ReLU pass and a BN pass that allocates (``floor`` is that shift; None without ``then``).
    """

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, n_bins: int = N_BINS,
                 then: tuple[np.ndarray, np.ndarray] | None = None):
        torch = _torch()
        self.kh, self.kw, self.cin, self.cout = kernel.shape
        self.weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))  # (out, in, kh, kw)
        self.bias = torch.from_numpy(np.ascontiguousarray(bias))
        top, bottom = _same_pad(self.kh)
        left, right = _same_pad(self.kw)
        self.pad = (left, right, top, bottom)  # F.pad order: last axis (time) first
        self.time_pad = (left, right)
        self.floor = None
        if then is not None:
            scale, shift = then
            if np.any(scale < 0):
                raise ValueError("a batch norm with a negative scale cannot be folded through the ReLU")
            kernel = (kernel * scale).astype(np.float32)  # scale per output channel (last axis)
            bias = (bias * scale + shift).astype(np.float32)
            self.floor = torch.from_numpy(np.ascontiguousarray(shift, dtype=np.float32))
        if self.kh > 5:
            # cross-correlation out[f] = sum_j w[j] x[f + j - top] is the convolution of x with the
            # flipped kernel, read from index f + kh - 1 - top
            self.n_fft = _fft_size(n_bins + self.kh - 1)
            spectrum = np.fft.rfft(kernel[::-1].astype(np.float64), n=self.n_fft, axis=0)  # (nb, kw, in, out)
            # complex products as real matrix products on interleaved (re, im) pairs:
            # (xr + i xi)(gr + i gi) = (xr gr - xi gi) + i (xr gi + xi gr)
            real = np.empty((len(spectrum), self.kw, self.cin, 2, self.cout, 2), dtype=np.float32)
            real[:, :, :, 0, :, 0] = spectrum.real
            real[:, :, :, 1, :, 0] = -spectrum.imag
            real[:, :, :, 0, :, 1] = spectrum.imag
            real[:, :, :, 1, :, 1] = spectrum.real
            self.taps = [torch.from_numpy(np.ascontiguousarray(real[:, dt].reshape(len(spectrum), 2 * self.cin,
                                                                                    2 * self.cout)))
                         for dt in range(self.kw)]  # per time tap (nb, 2 in, 2 out)
            self.offset = self.kh - 1 - top
            # the bias enters as the DC bin (real part times n_fft): irfft adds it to every output,
            # which saves a pass over the output
            self.dc_bias = torch.from_numpy((bias.astype(np.float64) * self.n_fft).astype(np.float32))
        elif self.kh == self.kw == 1:
            self.matrix = torch.from_numpy(np.ascontiguousarray(kernel[0, 0]))  # (in, out)
            self.fast_bias = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        else:
            self.weight_cl = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).contiguous(
                memory_format=torch.channels_last)
            self.fast_bias = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))

    def direct(self, x):
        import torch.nn.functional as F
        return F.conv2d(F.pad(x, self.pad), self.weight, self.bias)

    def fast(self, x):
        torch = _torch()
        import torch.nn.functional as F
        if self.kh > 5:
            y = self._fft_conv(x)
        elif self.kh == self.kw == 1:
            y = torch.addmm(self.fast_bias, x.reshape(-1, self.cin), self.matrix).view(*x.shape[:2], self.cout)
        else:
            y = F.conv2d(x.permute(2, 0, 1).unsqueeze(0), self.weight_cl, self.fast_bias,
                         padding=(self.kh // 2, self.kw // 2))  # odd kernel: "same" is symmetric
            y = y.squeeze(0).permute(1, 2, 0)
        if self.floor is not None:
            y = torch.maximum(y, self.floor, out=y)  # BN(ReLU(z)) of the unscaled z, in place
        return y

    def _fft_conv(self, x):
        """Tall kernel along frequency, x [F, T, C] -> [F, T, O], bias included (no ReLU)."""
        torch = _torch()
        import scipy.fft

        n_bins, n_frames = x.shape[0], x.shape[1]
        left, right = self.time_pad
        workers = torch.get_num_threads()
        # "same" zero padding in time as zero frames, so that time tap dt reads frames dt..dt+T-1 of one
        # spectrum and adds its product into one contiguous result in place (baddbmm). Into a shifted
        # view of the result torch takes a slow path with more than one thread.
        if left or right:
            padded = np.zeros((n_bins, n_frames + left + right, self.cin), dtype=np.float32)
            padded[:, left: left + n_frames] = x.numpy()
        else:  # one time tap (the 360x1 kernel): nothing to pad, no copy
            padded = np.ascontiguousarray(x.numpy())
        # scipy returns the spectrum as (nb, T, C) rows, the layout the matrix products want
        spec = scipy.fft.rfft(padded, n=self.n_fft, axis=0, workers=workers)
        del padded
        spec = torch.from_numpy(spec.view(np.float32))  # (nb, T + kw - 1, 2C): re, im interleaved
        acc = torch.matmul(spec[:, left: left + n_frames], self.taps[left])
        for dt, tap in enumerate(self.taps):  # out[t] += tap_dt(spec)[t + dt - left], zero outside
            if dt != left:
                acc.baddbmm_(spec[:, dt: dt + n_frames], tap)
        del spec
        acc[0, :, 0::2] += self.dc_bias
        out = scipy.fft.irfft(acc.numpy().view(np.complex64), n=self.n_fft, axis=0, workers=workers)
        return torch.from_numpy(out[self.offset: self.offset + n_bins])


def _fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast for pocketfft/MKL)."""
    best = 1 << (n - 1).bit_length()
    for a in range(best.bit_length()):
        for b in range(12):
            for c in range(8):
                size = (1 << a) * 3 ** b * 5 ** c
                if n <= size < best:
                    best = size
    return best


def _bn_affine(gamma, beta, mean, var) -> tuple[np.ndarray, np.ndarray]:
    """(scale [C], shift [C]) float32 of a Keras BatchNormalization in inference mode (epsilon 1e-3)."""
    scale = (gamma / np.sqrt(var + BN_EPS)).astype(np.float32)
    return scale, (beta - mean * scale).astype(np.float32)


class _BatchNorm:
    """Keras BatchNormalization in inference mode (epsilon 1e-3) as a per-channel affine map."""

    def __init__(self, gamma, beta, mean, var):
        torch = _torch()
        scale, shift = _bn_affine(gamma, beta, mean, var)
        self.scale = torch.from_numpy(scale)
        self.shift = torch.from_numpy(shift)

    def direct(self, x):  # [1, C, F, T]
        return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)

    def fast(self, x):  # [F, T, C]
        return _torch().addcmul(self.shift, x, self.scale)


def _stack(entries: list[list[np.ndarray]]) -> list:
    """Ops of one part of the network. A convolution followed by a BN (after its ReLU) with no negative
    scale carries that BN in ``then`` for the fast path (:class:`_Conv`); the direct path still runs it."""
    ops = []
    for i, entry in enumerate(entries):
        if len(entry) == 4:
            ops.append(_BatchNorm(*entry))
        elif len(entry) == 2:
            after = entries[i + 1] if i + 1 < len(entries) else []
            affine = _bn_affine(*after) if len(after) == 4 else None
            ops.append(_Conv(*entry, then=affine if affine is not None and np.all(affine[0] >= 0) else None))
        else:
            raise ChoirbenchError(f"multi-F0 weights: a layer with {len(entry)} arrays is neither conv nor BN")
    return ops


class LateDeep:
    """The Late/Deep network (Cuesta et al. 2020, model 3) with the shipped weights, inference only.

    ``__call__(mag_db, dphase, impl="fast")``: two float32 tensors [5, 360, n] -> salience [360, n].
    ``impl="direct"`` runs every layer by conv2d on [1, C, F, T] (the straightforward port, kept as the
    reference the fast path is tested against); ``"fast"`` runs channels last with FFT convolutions
    for the tall kernels (see :class:`_Conv`). Every convolution except the last is followed by
    ReLU; each BN follows a ReLU.
    """

    def __init__(self, weights: dict[str, np.ndarray] | None = None):
        from choirbench.data_prep.pretrained import layers, load_weights

        weights = load_weights("cuesta_multif0") if weights is None else weights
        self.branches = [_stack(layers(weights, stem)) for stem in ("base_model1", "base_model2")]
        self.head = _stack(layers(weights, "cuesta"))
        shapes = [[op.cout for op in ops if isinstance(op, _Conv)] for ops in (*self.branches, self.head)]
        if shapes != [[16, 32, 32, 32, 32, 32]] * 2 + [[64, 64, 8, 1]]:
            raise ChoirbenchError(f"multi-F0 weights: unexpected layer widths {shapes}")

    @staticmethod
    def _run(ops, x, impl: str, last_activation: bool = True):
        torch = _torch()

        def folded(op) -> bool:  # a fast convolution that applies its ReLU and the BN after it itself
            return impl == "fast" and isinstance(op, _Conv) and op.floor is not None

        for i, op in enumerate(ops):
            if i and folded(ops[i - 1]):
                continue  # this is the BN that convolution applied already
            x = getattr(op, impl)(x)
            if isinstance(op, _Conv) and not folded(op) and (last_activation or i < len(ops) - 1):
                x = torch.relu_(x) if impl == "fast" else torch.relu(x)
        return x

    def __call__(self, mag_db, dphase, impl: str = "fast"):
        torch = _torch()
        if impl not in ("fast", "direct"):
            raise ValueError(f"impl must be 'fast' or 'direct', got {impl!r}")
        with torch.inference_mode():
            if impl == "direct":
                x = torch.cat([self._run(self.branches[0], mag_db[None], impl),
                               self._run(self.branches[1], dphase[None], impl)], dim=1)
                return torch.sigmoid(self._run(self.head, x, impl, last_activation=False))[0, 0]
            x = torch.cat([self._run(self.branches[0], mag_db.permute(1, 2, 0).contiguous(), impl),
                           self._run(self.branches[1], dphase.permute(1, 2, 0).contiguous(), impl)], dim=2)
            return torch.sigmoid(self._run(self.head, x, impl, last_activation=False))[..., 0]


@lru_cache(maxsize=1)
def _model() -> LateDeep:
    return LateDeep()


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    torch = _torch()
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise ChoirbenchError(f"multi-F0: threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- salience

def salience(audio, sr, *, block_s: float = DEFAULT_BLOCK_S, threads: int | None = None,
             impl: str = "fast") -> Salience:
    """Late/Deep multi-F0 salience of a mono recording (Cuesta, McFee & Gómez, ISMIR 2020).

    Parameters: audio [n] samples (any real dtype) at ``sr`` Hz; ``block_s`` seconds of output
    frames computed per block (memory grows with it, the result does not change); ``threads``
    torch threads (None: leave torch's setting); ``impl`` "fast" or "direct" (the reference
    network, several times slower, same map to float rounding: see :class:`LateDeep`).
    Returns a :class:`Salience` on the 22 050 Hz / hop-256 grid (T = n_22050 // 256 frames).
    A recording without any signal (all CQT magnitudes below the -100 dB floor) gets an all-zero
    map. Raises ChoirbenchError for empty, too short, non-finite or multi-channel audio, or a
    non-positive block_s.
    """
    if not (isinstance(block_s, (int, float)) and math.isfinite(block_s) and block_s > 0):
        raise ChoirbenchError(f"multi-F0: block_s must be a positive number of seconds, got {block_s!r}")
    if impl not in ("fast", "direct"):
        raise ChoirbenchError(f"multi-F0: impl must be 'fast' or 'direct', got {impl!r}")
    y = _prepare_audio(audio, sr)
    n_frames = len(y) // HOP
    block = max(1, int(round(block_s * SR / HOP)))
    starts = list(range(0, n_frames, block))
    sal = np.zeros((N_BINS, n_frames), dtype=np.float32)
    result = Salience(times_s=frame_times(n_frames), freqs_hz=hcqt_frequencies(), map=sal)
    with _torch_threads(threads), mmap_threshold(LONG_MMAP_MB if len(starts) > 1 else 0):
        workers = _torch().get_num_threads()
        cached = None
        if len(starts) == 1:  # one block: one CQT pass gives both the reference and the features
            cached = _raw_features(y, 0, n_frames, workers)
            peak = cached[2]
        else:  # the dB reference is each harmonic's maximum over the whole recording: a first pass
            peak = np.zeros(len(HARMONICS), dtype=np.float32)
            for start in starts:
                np.maximum(peak, _peak_magnitudes(y, start, min(n_frames, start + block), workers), out=peak)
        if peak[0] < AMIN:
            return result  # nothing above the dB floor: no pitch anywhere (the network would see 0 dB)
        ref_db = _reference_db(peak)
        model = _model()
        for start in starts:
            stop = min(n_frames, start + block)
            lo, hi = max(0, start - NET_CONTEXT), min(n_frames, stop + NET_CONTEXT)
            first = max(0, lo - 1)  # one frame more for the phase differential
            level, dphase, _ = cached if cached is not None else _raw_features(y, first, hi, workers)
            cached = None
            mag = _apply_reference(level, ref_db)
            del level
            if lo > 0:
                mag, dphase = mag[..., 1:], dphase[..., 1:]  # frame `first` only served as previous phase
            _network_frames(model, mag, dphase, lo, start, stop, n_frames, sal, impl)
            del mag, dphase
            if len(starts) > 1:
                trim_heap()  # a block's freed temporaries go back to the OS, not into the next phase's peak
    return result


def _network_frames(model, mag, dphase, lo, start, stop, n_frames, out, impl) -> None:
    """Salience of frames start..stop-1 into out[:, start:stop], from features of frames lo.. (in chunks).

    Each chunk of NET_CHUNK frames is computed with NET_CONTEXT frames of features on each side
    (or the recording's edge, where the network zero-pads like the original), so chunks join
    without seams and the activations stay small (64 x 360 x ~300 floats).
    """
    torch = _torch()
    have = lo + mag.shape[-1]
    for s in range(start, stop, NET_CHUNK):
        e = min(stop, s + NET_CHUNK)
        a, b = max(0, s - NET_CONTEXT), min(n_frames, e + NET_CONTEXT)
        if a < lo or b > have:
            raise AssertionError("feature block lacks the network's context")  # a bug, not bad input
        x1 = torch.from_numpy(mag[..., a - lo: b - lo])
        x2 = torch.from_numpy(dphase[..., a - lo: b - lo])
        out[:, s:e] = model(x1, x2, impl)[:, s - a: e - a].numpy()


def peaks(sal: Salience, threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, list[np.ndarray]]:
    """Multi-F0 estimate: per frame, the bins that are local maxima along frequency with salience >= threshold.

    Returns ``(times_s [T], [array of F0s in Hz per frame])``, the format ``mir_eval.multipitch``
    takes (an empty array for a frame without pitch). The peak rule is
    :func:`choirbench.data_prep.voice_assignment.local_peaks` (the assigners use the same one).
    Source: the post-processing of Cuesta et al. (2020), threshold 0.5 for Late/Deep. Raises
    ChoirbenchError for a threshold outside (0, 1].
    """
    from choirbench.data_prep.voice_assignment import local_peaks

    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ChoirbenchError(f"multi-F0: peak threshold must be in (0, 1], got {threshold!r}")
    frames, bins = np.nonzero(local_peaks(sal.map, threshold).T)  # ordered by frame, then by bin
    bounds = np.searchsorted(frames, np.arange(sal.map.shape[1] + 1))
    freqs = sal.freqs_hz.astype(np.float64)
    return sal.times_s.copy(), [freqs[bins[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
