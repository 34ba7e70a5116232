"""Voice assignment: per-voice F0 on the project's hop grid from a multi-F0 salience map.

A multi-F0 estimator (:mod:`choirbench.data_prep.multif0`, Cuesta, McFee & Gómez,
ISMIR 2020) says *which* pitches sound in each frame; separation needs to know
*whose* they are. Two assigners, chosen by ``assigner``:

* ``voas``: the VoAS-CNN of Cuesta & Gómez, "Voice assignment in vocal quartets
  using deep learning models based on pitch salience", TISMIR 5(1) 2022, with
  the trained weights shipped in ``weights/voas_cnn.npz``. Its input is the
  salience map itself (360 bins of 20 cents from 32.7 Hz, hop 256 at 22 050 Hz)
  cut into non-overlapping patches of 128 frames, the last one zero-padded, as
  the published prediction script does; its first layer is a batch norm, so no
  other input normalisation. It outputs one salience map per voice (S, A, T,
  B); a voice's F0 in a frame is its map's strongest local maximum along
  frequency above that voice's threshold (published values 0.1, 0.3, 0.4, 0.4
  for S, A, T, B), else unvoiced. (The published script keeps the *highest*
  bin among the peaks above the threshold, a side effect of its loop; the
  strongest peak is what its docstring describes and what is used here.)
* ``pitch_sort``: the salience peaks of each frame, sorted by pitch, matched
  to the voices in pitch order (B lowest, S highest, voices never cross), the
  paper's own approach (Schulze-Forster et al., TASLP 2023, Sec. V). The match
  is the order-preserving one of least cost, found by dynamic programming
  over (voice, peak): assigning a peak costs its distance in semitones from the
  voice's last F0 (continuity, within ``memory_s``) or, weakly, from the
  centre of the voice's range, plus ``range_cost`` per semitone outside the
  voice's range; leaving a voice unvoiced costs ``unvoiced_cost``; leaving a
  peak unused costs ``unused_peak_cost`` times its salience. With J voices and
  more than J peaks (a 2-voice request on a quartet), the peaks that fit the
  requested voices' ranges win.

Either way, J = 1..4 named voices (``"SATB"``, ``"SA"``, ``"ATB"``, ...) and the
result is resampled onto the project's grid (frame ``k`` at ``k * 256 / 16000``
s, nearest neighbour in time). Frames where the salience map has no peak above
the peak threshold are unvoiced for every voice, whatever the assigner says:
silence stays silence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from choirbench import HOP, PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.params import resolve_params


N_BINS = 360
BINS_PER_OCTAVE = 60
F_MIN_HZ = 32.7
SALIENCE_RATE = 22_050
SALIENCE_HOP = 256
VOAS_PATCH = 128          # frames per VoAS-CNN input patch (published prediction script)
FRAME_CHUNK = 4096        # salience frames per pass of the frame-wise steps (bounds their temporaries)
VOAS_BATCH = 16           # VoAS-CNN patches per network call

ASSIGNERS = ("voas", "pitch_sort")


def multif0_threshold() -> float:
    from choirbench.data_prep.multif0 import DEFAULT_THRESHOLD

    return float(DEFAULT_THRESHOLD)


ASSIGN_DEFAULTS = {
    # pitch_sort: the paper's own approach, and on synthetic chorales and the real CSD quartet it is
    # both more accurate and ~60x cheaper than this port of the VoAS-CNN (benchmarks/eval_voice_assignment.py,
    # benchmarks/bench_f0_mixture.py)
    "assigner": "pitch_sort",
    # salience peaks (pitch_sort's candidates; the silence gate of both assigners): Late/Deep's published 0.5
    "peak_threshold": multif0_threshold(),
    # VoAS-CNN output thresholds per voice (Cuesta & Gómez 2022, published prediction script)
    "voas_threshold": {"S": 0.1, "A": 0.3, "T": 0.4, "B": 0.4},
    # pitch_sort: sung range of each part in Hz (about S C4-C6, A F3-F5, T B2-C5, B D2-E4)
    "range_hz": {"S": [250.0, 1050.0], "A": [170.0, 700.0], "T": [120.0, 520.0], "B": [70.0, 330.0]},
    "memory_s": 0.5,            # how long a voice's last F0 steers continuity across a gap
    "centre_weight": 0.2,       # cost per semitone from the range centre when there is no recent F0
    "range_cost": 2.0,          # cost per semitone outside the voice's range
    "unvoiced_cost": 8.0,       # cost of leaving a voice unvoiced in a frame
    "unused_peak_cost": 12.0,   # cost of leaving a peak unassigned, times its salience
}


def parse_voices(voices: str, where: str = "voices") -> tuple[str, ...]:
    """``"SATB"``, ``"ATB"``, ``"S-A"`` ... -> ("S", "A", ...) in S, A, T, B order.

    Raises :class:`ChoirbenchError` for an empty string, unknown letters or repeats.
    """
    letters = [c for c in str(voices).upper() if c not in "-, "]
    if not letters:
        raise ChoirbenchError(f"{where}: no voice named (use letters of S, A, T, B, e.g. SATB or SA)")
    unknown = sorted(set(letters) - set(PARTS))
    if unknown:
        raise ChoirbenchError(f"{where}: unknown voice(s) {unknown} in {voices!r} (use S, A, T, B)")
    if len(set(letters)) != len(letters):
        raise ChoirbenchError(f"{where}: a voice is named twice in {voices!r}")
    return tuple(p for p in PARTS if p in letters)


def bin_frequencies() -> np.ndarray:
    """The salience map's bin frequencies [360] in Hz: 32.7 * 2^(k / 60)."""
    return F_MIN_HZ * 2.0 ** (np.arange(N_BINS) / BINS_PER_OCTAVE)


@dataclass
class SalienceMap:
    """A multi-F0 salience map (the fields of :class:`choirbench.data_prep.multif0.Salience`)."""

    times_s: np.ndarray    # [T] frame times in s
    freqs_hz: np.ndarray   # [360] bin frequencies in Hz
    map: np.ndarray        # [360, T] salience in [0, 1]


def check_salience(sal) -> tuple[np.ndarray, np.ndarray]:
    """(times_s [T], map [360, T] float32) of a salience object, checked.

    Raises :class:`ChoirbenchError` for a wrong shape, non-finite values or an
    empty map.
    """
    values = np.asarray(getattr(sal, "map", None), dtype=np.float32)
    times = np.asarray(getattr(sal, "times_s", None), dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != N_BINS:
        raise ChoirbenchError(f"salience map must have shape [{N_BINS}, frames], got {values.shape}")
    if values.shape[1] == 0:
        raise ChoirbenchError("salience map has no frames (input too short)")
    if times.shape != (values.shape[1],):
        raise ChoirbenchError(f"salience times have shape {times.shape}, expected ({values.shape[1]},)")
    if not np.all(np.isfinite(values)) or not np.all(np.isfinite(times)):
        raise ChoirbenchError("salience map has NaN or infinite values")
    freqs = getattr(sal, "freqs_hz", None)
    if freqs is not None and not np.allclose(np.asarray(freqs, float), bin_frequencies(), rtol=1e-3):
        raise ChoirbenchError("salience bins are not the 360 bins of 20 cents from 32.7 Hz")
    return times, values


def local_peaks(values: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean [F, T]: strict local maxima along frequency (axis 0) at or above ``threshold``.

    The one peak rule of the project (multi-F0 estimate, assigners and F0 accuracy alike): a bin is a
    peak when it is greater than both neighbours, so the first and last bins never are, as in the
    ``scipy.signal.argrelmax`` post-processing of Cuesta et al. (2020). Frame by frame, over
    :data:`FRAME_CHUNK` frames at a time: the temporaries of a 10-minute map would otherwise be
    several times the map itself.
    """
    values = np.asarray(values)
    out = np.zeros(values.shape, dtype=bool)
    for a in range(0, values.shape[1], FRAME_CHUNK):
        part = values[:, a:a + FRAME_CHUNK]
        inner = part[1:-1]
        np.logical_and((inner > part[:-2]) & (inner > part[2:]), inner >= threshold,
                       out=out[1:-1, a:a + FRAME_CHUNK])
    return out


# ----------------------------------------------------------------------------- VoAS-CNN

_VOAS_NET = None
_VOAS_FAST = None


def _voas_network():
    """The VoAS-CNN as a torch module in eval mode, built once from the shipped weights (the reference)."""
    global _VOAS_NET
    if _VOAS_NET is None:
        _VOAS_NET = _build_voas()
    return _VOAS_NET


def _voas_fast():
    """The VoAS-CNN's layers as the fast ops of the multi-F0 port, built once: ``(trunk, [(branch, head)] * 4)``.

    Channels last, the 70x3 kernels as FFT convolutions along frequency and every BN that follows a
    ReLU folded into the convolution before it (:class:`choirbench.data_prep.multif0._Conv`); the
    same network as :func:`_build_voas` to float rounding (tests/test_voice_assignment.py).
    """
    global _VOAS_FAST
    if _VOAS_FAST is None:
        from choirbench.data_prep import multif0
        from choirbench.data_prep.pretrained import layers, load_weights

        weights = load_weights("voas_cnn")
        trunk = multif0._stack(layers(weights, "voas_cnn_f0_assigner"))
        voices = [(multif0._stack(layers(weights, f"voas_cnn_branch{k}")),
                   multif0._Conv(layers(weights, f"voas_cnn_postprocess{k}_weights")[0][0],
                                 layers(weights, f"voas_cnn_postprocess{k}_bias")[0][0]))
                  for k in range(1, 5)]
        _VOAS_FAST = trunk, voices
    return _VOAS_FAST


def _voas_patch_fast(patch: np.ndarray) -> np.ndarray:
    """Per-voice maps [4, 360, 128] of one patch [360, 128] by the fast ops (no batch: patches are
    independent, and one patch is already a large enough product)."""
    import torch

    from choirbench.data_prep.multif0 import LateDeep

    trunk, voices = _voas_fast()
    x = LateDeep._run(trunk, torch.from_numpy(patch)[..., None], "fast")      # [360, 128, 16]
    return torch.stack([torch.sigmoid(head.fast(LateDeep._run(branch, x, "fast")))[..., 0]
                        for branch, head in voices]).numpy()


def _build_voas():
    import torch
    from torch import nn
    from torch.nn import functional as F

    from choirbench.data_prep.multif0 import _bn_affine
    from choirbench.data_prep.pretrained import layers, load_weights

    weights = load_weights("voas_cnn")

    def conv(entry):
        kernel, bias = entry
        layer = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2], padding=0)
        layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        layer.bias.data = torch.from_numpy(bias)
        return layer

    def bn(entry):
        return tuple(torch.from_numpy(a) for a in _bn_affine(*entry))

    class Voas(nn.Module):
        """Trunk -> four branches -> per-voice 1x1 conv + sigmoid (Cuesta & Gómez 2022, Fig. 2)."""

        def __init__(self):
            super().__init__()
            trunk = layers(weights, "voas_cnn_f0_assigner")
            self.trunk_bn = [bn(trunk[k]) for k in (0, 2, 4, 6, 8)]
            self.trunk_conv = nn.ModuleList(conv(trunk[k]) for k in (1, 3, 5, 7))
            self.branch_conv = nn.ModuleList()
            self.branch_bn = []
            self.heads = nn.ModuleList()
            for k in range(1, 5):
                branch = layers(weights, f"voas_cnn_branch{k}")
                self.branch_conv.append(nn.ModuleList([conv(branch[0]), conv(branch[2])]))
                self.branch_bn.append(bn(branch[1]))
                kernel = layers(weights, f"voas_cnn_postprocess{k}_weights")[0][0]
                bias = layers(weights, f"voas_cnn_postprocess{k}_bias")[0][0]
                self.heads.append(conv([kernel, bias]))

        @staticmethod
        def same(x, layer):
            # Keras "same": total padding k - 1, the extra row/column of an even kernel at the end
            kh, kw = layer.kernel_size
            x = F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
            return F.relu(layer(x))

        @staticmethod
        def norm(x, scale_shift):
            scale, shift = scale_shift
            return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

        def forward(self, x):                    # x [B, 1, 360, 128]
            x = self.norm(x, self.trunk_bn[0])
            for layer, scale_shift in zip(self.trunk_conv, self.trunk_bn[1:]):
                x = self.norm(self.same(x, layer), scale_shift)
            out = []
            for (first, second), scale_shift, head in zip(self.branch_conv, self.branch_bn, self.heads):
                y = self.same(self.norm(self.same(x, first), scale_shift), second)
                out.append(torch.sigmoid(head(y))[:, 0])
            return torch.stack(out, dim=1)       # [B, 4, 360, 128]

    return Voas().eval()


def voas_saliences(values: np.ndarray, batch: int = VOAS_BATCH, impl: str = "fast") -> np.ndarray:
    """VoAS-CNN per-voice salience maps [4 (S, A, T, B), 360, T] from a mixture salience map [360, T].

    The map is cut into non-overlapping 128-frame patches (the last zero-padded),
    as in the published prediction script; the network sees each patch alone. ``impl``: "fast"
    (:func:`_voas_fast`, ~6x faster: benchmarks/bench_f0_mixture.py) or "direct" (the torch module
    of :func:`_build_voas`, the straightforward port the fast path is tested against).
    """
    values = np.asarray(values, dtype=np.float32)
    return np.concatenate([maps for _, maps in _voas_chunks(values, batch, impl)], axis=-1)


def _voas_chunks(values: np.ndarray, batch: int | None = None, impl: str = "fast"):
    """Yield (first frame, per-voice maps [4, 360, n]) of ``batch`` patches at a time (see :func:`voas_saliences`).

    Patches are independent, so chunking changes nothing; a long map never has its four
    per-voice maps in memory at once (4 x the mixture map).
    """
    import torch

    if impl not in ("fast", "direct"):
        raise ValueError(f"impl must be 'fast' or 'direct', got {impl!r}")
    n = values.shape[1]
    step = (batch or VOAS_BATCH) * VOAS_PATCH
    with torch.inference_mode():
        for a in range(0, n, step):
            part = values[:, a:a + step]
            width = part.shape[1]
            n_patches = -(-width // VOAS_PATCH)
            padded = np.zeros((N_BINS, n_patches * VOAS_PATCH), dtype=np.float32)
            padded[:, :width] = part
            patches = np.ascontiguousarray(padded.reshape(N_BINS, n_patches, VOAS_PATCH).transpose(1, 0, 2))
            if impl == "fast":
                out = np.stack([_voas_patch_fast(patch) for patch in patches])                # [P, 4, 360, 128]
            else:
                out = _voas_network()(torch.from_numpy(patches[:, None])).numpy()
            yield a, out.transpose(1, 2, 0, 3).reshape(4, N_BINS, -1)[:, :, :width]


def _voas_assign(times: np.ndarray, values: np.ndarray, voices: tuple[str, ...], params: dict) -> np.ndarray:
    thresholds = [float(params["voas_threshold"][part]) for part in PARTS]
    freqs = bin_frequencies()
    f0 = np.zeros((4, values.shape[1]))
    candidates = []
    for a, per_voice in _voas_chunks(values):
        peaks = np.stack([local_peaks(per_voice[k], thresholds[k]) for k in range(4)])   # [4, 360, n]
        if voices == PARTS:
            # each output's strongest peak above its threshold, else unvoiced
            strongest = np.argmax(np.where(peaks, per_voice, -1.0), axis=1)                # [4, n]
            f0[:, a:a + per_voice.shape[-1]] = np.where(peaks.any(axis=1), freqs[strongest], 0.0)
            continue
        # The network was trained on quartets and names lines by position (top line -> S): for fewer
        # voices every peak of its four outputs is a candidate of the pitch-sort matching (ranges,
        # continuity), which also recovers two lines that landed in one output (e.g. S and B far apart).
        strength = np.where(peaks, per_voice, 0.0).max(axis=0)       # [360, n]
        merged = peaks.any(axis=0)
        candidates += [(np.flatnonzero(merged[:, t]), strength[merged[:, t], t]) for t in range(merged.shape[1])]
    return f0 if voices == PARTS else _pitch_sort_assign(times, candidates, voices, params)


# ----------------------------------------------------------------------------- pitch sorting

def salience_peaks(values: np.ndarray, threshold: float, peaks: np.ndarray | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame, (bin indices ascending, their salience) of the local maxima at or above ``threshold``.

    ``peaks``: :func:`local_peaks` of ``values`` at ``threshold`` when the caller has it already.
    """
    peaks = local_peaks(values, threshold) if peaks is None else peaks
    return [(np.flatnonzero(peaks[:, t]), values[peaks[:, t], t]) for t in range(values.shape[1])]


def _pitch_sort_assign(times: np.ndarray, candidates: list, voices: tuple[str, ...], params: dict) -> np.ndarray:
    """F0 [J, T] from per-frame candidate pitches (bin indices ascending, strengths)."""
    freqs = bin_frequencies()
    # voices from low to high, so that peak order (ascending pitch) and voice order agree
    order = sorted(range(len(voices)), key=lambda j: PARTS.index(voices[j]), reverse=True)
    low_high = [voices[j] for j in order]
    ranges = np.log2(np.array([params["range_hz"][v] for v in low_high], dtype=float)) * 12.0  # semitones
    centres = ranges.mean(axis=1)
    unvoiced, unused = float(params["unvoiced_cost"]), float(params["unused_peak_cost"])
    centre_w, range_w = float(params["centre_weight"]), float(params["range_cost"])
    memory = float(params["memory_s"])
    J, T = len(voices), len(candidates)
    out = np.zeros((J, T))
    last_pitch = np.full(J, np.nan)       # semitones
    last_time = np.full(J, -np.inf)
    for t, (bins, strength) in enumerate(candidates):
        if len(bins) == 0:
            continue
        pitch = np.log2(freqs[bins]) * 12.0          # ascending
        recent = (times[t] - last_time) <= memory
        ref = np.where(recent, last_pitch, centres)
        weight = np.where(recent, 1.0, centre_w)
        outside = np.maximum(ranges[:, :1] - pitch[None], 0) + np.maximum(pitch[None] - ranges[:, 1:], 0)
        cost = weight[:, None] * np.abs(pitch[None] - ref[:, None]) + range_w * outside     # [J, n]
        match = _order_preserving_match(cost, unvoiced, unused * np.asarray(strength))
        for jj, i in enumerate(match):
            if i >= 0:
                out[order[jj], t] = freqs[bins[i]]
                last_pitch[jj], last_time[jj] = pitch[i], times[t]
    return out


def _order_preserving_match(cost: np.ndarray, skip_voice: float, skip_peak: np.ndarray) -> list[int]:
    """Least-cost matching of voices (rows, low to high) to peaks (columns, ascending), order kept.

    Dynamic programming as for an edit distance: each voice takes one peak or
    none (``skip_voice``), each peak goes to one voice or none (``skip_peak[i]``),
    and a higher voice never takes a lower peak. Returns the peak index per voice, -1 = none.
    """
    J, n = cost.shape
    cost, skip_peak = cost.tolist(), [float(s) for s in skip_peak]   # plain floats: ~100x faster per cell
    D = [[0.0] * (n + 1) for _ in range(J + 1)]
    move = [[2] * (n + 1) for _ in range(J + 1)]                     # 0 match, 1 skip voice, 2 skip peak
    for i in range(1, n + 1):
        D[0][i] = D[0][i - 1] + skip_peak[i - 1]
    for j in range(1, J + 1):
        D[j][0], move[j][0] = j * skip_voice, 1
        row, prev, c = D[j], D[j - 1], cost[j - 1]
        for i in range(1, n + 1):
            best, k = prev[i - 1] + c[i - 1], 0
            if prev[i] + skip_voice < best:
                best, k = prev[i] + skip_voice, 1
            if row[i - 1] + skip_peak[i - 1] < best:
                best, k = row[i - 1] + skip_peak[i - 1], 2
            row[i], move[j][i] = best, k
    match = [-1] * J
    j, i = J, n
    while j > 0:
        if i > 0 and move[j][i] == 0:
            match[j - 1] = i - 1
            j, i = j - 1, i - 1
        elif i == 0 or move[j][i] == 1:
            j -= 1
        else:
            i -= 1
    return match


# ----------------------------------------------------------------------------- public API

def assign_voices(sal, voices: str | tuple[str, ...] = "SATB", params: dict | None = None,
                  n_frames: int | None = None) -> np.ndarray:
    """Per-voice F0 [J, n_frames] in Hz (0 = unvoiced) on the project's hop grid.

    ``sal`` is a salience map (``times_s [T]``, ``freqs_hz [360]``, ``map
    [360, T]`` in [0, 1], as :func:`choirbench.data_prep.multif0.salience`
    returns); ``voices`` names the J voices in any order (returned in S, A, T, B
    order); ``params`` overrides :data:`ASSIGN_DEFAULTS` (``assigner``: ``voas``
    or ``pitch_sort``); ``n_frames`` is the length of the output grid (frame
    ``k`` at ``k * 256 / 16000`` s), by default up to the last salience frame.

    Raises :class:`ChoirbenchError` for unknown voices, knobs or assigners and
    for a malformed salience map.
    """
    from choirbench.data_prep.f0 import to_hop_grid

    params = resolve_params(ASSIGN_DEFAULTS, params or {}, where="f0_mixture")
    voices = parse_voices("".join(voices) if not isinstance(voices, str) else voices)
    times, values = check_salience(sal)
    assigner = params["assigner"]
    if assigner not in ASSIGNERS:
        raise ChoirbenchError(f"f0_mixture.assigner must be one of {ASSIGNERS}, got {assigner!r}")
    peaks = local_peaks(values, float(params["peak_threshold"]))
    if assigner == "voas":
        f0 = _voas_assign(times, values, voices, params)
    else:
        f0 = _pitch_sort_assign(times, salience_peaks(values, float(params["peak_threshold"]), peaks), voices, params)
    # silence gate: no salience peak at all -> nobody sings
    f0[:, ~peaks.any(axis=0)] = 0.0
    del peaks
    if n_frames is None:
        n_frames = int(np.floor(times[-1] * SAMPLE_RATE / HOP)) + 1
    step = float(np.median(np.diff(times))) if len(times) > 1 else SALIENCE_HOP / SALIENCE_RATE
    return np.stack([to_hop_grid(times, track, n_frames, max_gap_s=0.5 * step + 0.5 * HOP / SAMPLE_RATE)
                     for track in f0])


def mixture_f0(mixture: np.ndarray, sr: int, parts: list[str], n_frames: int,
               params: dict | None = None) -> dict[str, np.ndarray]:
    """{part: F0 [n_frames] Hz, 0 = unvoiced} of the named parts, estimated from their mixture.

    :func:`estimate_f0` with the parts in S, A, T, B order; voiced values below the readers' voiced
    range (:data:`choirbench.io.F0_MIN_HZ`; the salience grid starts at 32.7 Hz) become unvoiced,
    so an estimated track obeys the same rule as a track read from a file.
    """
    from choirbench.io import F0_MIN_HZ

    voices = "".join(p for p in "SATB" if p in parts)
    f0 = estimate_f0(mixture, sr, voices, params, n_frames)
    return {part: np.where(track >= F0_MIN_HZ, track, 0.0) for part, track in zip(voices, f0)}


def estimate_f0(audio: np.ndarray, sr: int, voices: str = "SATB", params: dict | None = None,
                n_frames: int | None = None, *, block_s: float | None = None) -> np.ndarray:
    """Per-voice F0 [J, n_frames] (Hz, 0 = unvoiced) of a mono mixture at any rate.

    The multi-F0 salience of Cuesta, McFee & Gómez (ISMIR 2020) followed by
    :func:`assign_voices`. ``n_frames`` defaults to ``len(audio) at 16 kHz //
    256 + 1`` (centred frames, as :func:`choirbench.data_prep.f0.n_frames_for`).
    ``block_s``: seconds of salience per block (:func:`choirbench.data_prep.multif0.salience`;
    None = its default). Raises :class:`ChoirbenchError` for empty, too short, non-finite or
    multichannel audio.
    """
    return estimate_salience_f0(audio, sr, voices, params, n_frames, with_peaks=False, block_s=block_s)[0]


def estimate_salience_f0(audio: np.ndarray, sr: int, voices: str = "SATB", params: dict | None = None,
                         n_frames: int | None = None, *, with_peaks: bool = True, block_s: float | None = None
                         ) -> tuple[np.ndarray, tuple[np.ndarray, list[np.ndarray]] | None]:
    """:func:`estimate_f0` and the multi-F0 peaks it started from: (f0 [J, n_frames], (times_s [T], [Hz arrays])).

    The peaks are the salience map's local maxima at or above ``peak_threshold``
    on the salience grid (hop 256 at 22 050 Hz), the multi-pitch estimate that
    :mod:`choirbench.evaluation.f0_accuracy` scores; None with ``with_peaks=False``
    (one list entry per 11.6-ms frame is not worth building for a long recording that needs only its F0).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ChoirbenchError(f"mixture must be mono (one channel), got shape {audio.shape}")
    if audio.size == 0:
        raise ChoirbenchError("mixture is empty")
    if not np.all(np.isfinite(audio)):
        raise ChoirbenchError("mixture has NaN or infinite samples")
    params = resolve_params(ASSIGN_DEFAULTS, params or {}, where="f0_mixture")
    voices = parse_voices(voices)
    if n_frames is None:
        n_frames = int(round(len(audio) * SAMPLE_RATE / sr)) // HOP + 1
    if not np.any(audio):
        n_sal = int(len(audio) * SALIENCE_RATE / sr) // SALIENCE_HOP
        return np.zeros((len(voices), n_frames)), (np.arange(n_sal) * SALIENCE_HOP / SALIENCE_RATE,
                                                    [np.zeros(0) for _ in range(n_sal)]) if with_peaks else None
    from choirbench.data_prep import multif0  # the estimator loads only when there is something to estimate

    sal = multif0.salience(audio, sr) if block_s is None else multif0.salience(audio, sr, block_s=block_s)
    f0 = assign_voices(sal, voices, params, n_frames=n_frames)
    return f0, multif0.peaks(sal, float(params["peak_threshold"])) if with_peaks else None
