"""synth-chorales: score parsing, realism of the synthetic voices (measured on the audio), format, errors.

Realism tests synthesise a few seconds each, never whole pieces.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep import chorale_scores as cs
from choirbench.data_prep import singing_voice as sv
from choirbench.data_prep import synth_chorales as synth
from choirbench.params import resolve_params

librosa = pytest.importorskip("librosa")

PYIN_RANGE = {"S": (200.0, 1100.0), "A": (140.0, 800.0), "T": (90.0, 600.0), "B": (60.0, 400.0)}
SCALE = [0, 2, 4, 5, 7, 5, 4, 2]


def _pyin(audio, part):
    fmin, fmax = PYIN_RANGE[part]
    est, voiced, _ = librosa.pyin(audio, fmin=fmin, fmax=fmax, sr=SAMPLE_RATE, frame_length=1024, hop_length=HOP)
    return est, voiced


# ----------------------------------------------------------------------------- index and scores

def test_index_lists_the_four_part_chorales():
    index = cs.chorale_index()
    ids = cs.satb_chorale_ids()
    assert 330 <= len(ids) <= 400
    assert len(set(index["piece_id"])) == len(index)
    assert ids == sorted(ids, key=cs.natural_key)
    assert cs.natural_key("bwv9.7") < cs.natural_key("bwv10.7")
    assert set(cs.satb_chorale_ids(48)) < set(ids)


@pytest.mark.parametrize("piece_id", ["bwv26.6", "bwv8.6", "bwv1.6"])
def test_index_entries_match_music21(piece_id):
    from music21 import corpus
    row = cs.chorale_index().set_index("piece_id").loc[piece_id]
    score = corpus.parse(row["corpus_path"])
    parts = list(score.parts)
    assert row["n_parts"] == len(parts)
    names = [cs.part_role(p.partName) for p in parts]
    assert bool(row["satb"]) == (len(parts) == 4 and set(names) == {"S", "A", "T", "B"})
    assert row["quarters"] == pytest.approx(float(score.highestTime))


@pytest.mark.parametrize("text, vowel, consonant", [
    ("Ach", "a", None), ("wie", "i", "f"), ("flüch", "i", "f"), ("tig,", "i", "plosive"), ("Schmerz", "e", "sh"),
    ("sein", "a", "s"), ("Haus", "a", "h"), ("Stern", "e", "sh"), ("mir", "i", None), ("Freu-", "o", "f"),
    ("", None, None), ("—", None, None)])
def test_syllable_sounds(text, vowel, consonant):
    assert cs.syllable_sounds(text) == (vowel, consonant)


def test_load_chorale_merges_ties_and_keeps_fermatas():
    from music21 import corpus
    chorale = cs.load_chorale("bwv26.6")
    score = corpus.parse("bach/bwv26.6")
    for part_m21 in score.parts:
        role = cs.part_role(part_m21.partName)
        ours = chorale.parts[role]
        theirs = [n for n in part_m21.stripTies().flatten().notes if n.quarterLength > 0]
        assert len(ours) == len(theirs)
        assert [n.midi for n in ours] == [int(round(n.pitch.ps)) for n in theirs]
        assert sum(n.end_ql - n.onset_ql for n in ours) == pytest.approx(sum(float(n.quarterLength) for n in theirs))
        assert all(b.onset_ql >= a.end_ql - 1e-9 for a, b in zip(ours, ours[1:]))
    soprano = chorale.parts["S"]
    assert sum(n.fermata for n in soprano) >= 3
    assert chorale.has_lyrics and soprano[0].vowel == "a"       # "Ach"
    # parts without their own text borrow the sung syllable: not everything is the default vowel
    assert len({n.vowel for n in chorale.parts["B"]}) >= 3


def test_time_map_lengthens_fermatas_and_pauses():
    chorale = cs.load_chorale("bwv26.6")
    time_map = cs.make_time_map(chorale, np.random.default_rng(0))
    assert 60 <= time_map.qpm <= 84
    beat = 60.0 / time_map.qpm
    notes = chorale.parts["S"]
    nominal = cs.nominal_notes(notes, time_map)
    lengths = (nominal[:, 1] - nominal[:, 0]) / np.array([n.end_ql - n.onset_ql for n in notes])
    fermata = np.array([n.fermata for n in notes])
    assert np.all(lengths[fermata] > 1.4 * beat)
    assert np.median(lengths[~fermata]) == pytest.approx(beat, rel=0.02)
    assert np.all(np.diff(nominal[:, 0]) > 0)
    first = int(np.argmax(fermata))            # an inner fermata: a caesura follows it
    assert nominal[first + 1, 0] - nominal[first, 1] >= 0.15 - 1e-9
    assert nominal[0, 0] == pytest.approx(cs.LEAD_IN_S)


# ----------------------------------------------------------------------------- realism (measured on audio)

@pytest.mark.parametrize("part, tonic", [("S", 67), ("B", 43)])
def test_pyin_agrees_with_written_f0(part, tonic):
    midis = [tonic + k for k in SCALE]
    audio, f0, _, _ = synth.sing_phrase(part, midis, [1, 1, 1, 2, 1, 1, 1, 2], vowels="aeioaeiu", seed=3,
                                        consonants=[None, "s", "plosive", "f", None, "sh", "h", "plosive"])
    est, voiced = _pyin(audio, part)
    n = min(len(est), len(f0))
    est, voiced, truth = est[:n], voiced[:n], f0[:n]
    both = voiced & (truth > 0)
    assert both.sum() > 150
    cents = 1200 * np.abs(np.log2(est[both] / truth[both]))
    assert np.mean(cents < 25) >= 0.95
    assert np.mean(voiced == (truth > 0)) >= 0.90


def test_vibrato_rate_measured_by_pyin():
    traits = cs.draw_singer_traits("A", synth.rng_for(7, "vibrato"))
    audio, f0, traits, _ = synth.sing_phrase("A", [64], [4], qpm=60, seed=7, traits=traits, noises=False)
    est, voiced = _pyin(audio, "A")
    start = int((cs.LEAD_IN_S + 1.0) * SAMPLE_RATE / HOP)   # after the delayed vibrato onset
    stop = int((cs.LEAD_IN_S + 3.7) * SAMPLE_RATE / HOP)
    track = est[start:stop]
    assert np.all(voiced[start:stop])
    cents = 1200 * np.log2(track / np.median(track))
    cents = signal.detrend(cents)
    spectrum = np.abs(np.fft.rfft(cents * np.hanning(len(cents)), 4096))
    freqs = np.fft.rfftfreq(4096, HOP / SAMPLE_RATE)
    band = (freqs > 2) & (freqs < 12)
    rate = freqs[band][np.argmax(spectrum[band])]
    assert 4.5 <= rate <= 6.5
    assert rate == pytest.approx(traits.vibrato_rate_hz, abs=0.4)
    assert 15 <= np.std(cents) * np.sqrt(2) <= 100          # extent in the designed 20-80 cents range


def _ltas_db(audio):
    freqs, power = signal.welch(audio, SAMPLE_RATE, nperseg=2048)
    return freqs, power


def _band_db(freqs, power, lo, hi):
    sel = (freqs >= lo) & (freqs < hi)
    return 10 * np.log10(np.mean(power[sel]))


def _singers_formant_prominence(audio):
    """dB by which the 2.0-3.2 kHz band stands above the 1.4-2.0 kHz valley."""
    freqs, power = _ltas_db(audio)
    return _band_db(freqs, power, 2000, 3200) - _band_db(freqs, power, 1400, 2000)


def _oscillator_bank(f0_frames, n):
    """The separation model's kind of signal: harmonics with 1/h amplitudes, no formants."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = np.interp(t, np.arange(len(f0_frames)) * HOP / SAMPLE_RATE, f0_frames)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    out = np.zeros(n)
    for h in range(1, 40):
        out += np.where(h * f0 < 7500, np.sin(h * phase) / h, 0.0)
    return out * (f0 > 0)


def test_long_term_spectra_show_formants_and_singers_formant():
    bass, bass_f0, _, _ = synth.sing_phrase("B", [43 + k for k in SCALE], [1] * 8, vowels="aoaoaoao", seed=1)
    sop, _, _, _ = synth.sing_phrase("S", [67 + k for k in SCALE], [1] * 8, vowels="aoaoaoao", seed=1)
    bank = _oscillator_bank(bass_f0, len(bass))
    # the bass's F3-F5 cluster makes a peak above the 1.4-2 kHz valley; a harmonic bank only falls
    assert _singers_formant_prominence(bass) >= 6.0
    assert _singers_formant_prominence(bank) < 0.0
    assert _singers_formant_prominence(sop) < _singers_formant_prominence(bass) - 3.0
    for audio in (bass, sop):   # F1/F2 region of a/o holds most energy, far above 3.5-5 kHz
        freqs, power = _ltas_db(audio)
        assert _band_db(freqs, power, 300, 1300) - _band_db(freqs, power, 3500, 5000) >= 25.0
    freqs, power = _ltas_db(bank)
    assert _band_db(freqs, power, 300, 1300) - _band_db(freqs, power, 3500, 5000) < 25.0


def test_high_soprano_note_has_no_energy_near_nyquist():
    audio, _, _, _ = synth.sing_phrase("S", [81, 83], [2, 2], vowels="a", seed=2)   # A5, B5
    freqs, power = signal.welch(audio, SAMPLE_RATE, nperseg=2048)
    top = power[freqs >= 7800].sum()
    voice = power[(freqs >= 80) & (freqs < 5000)].sum()
    assert 10 * np.log10(top / voice) <= -40.0


def _inharmonic_db(oversample):
    """Energy away from the harmonics of a steady C6 (aliases land there), re the harmonic energy."""
    audio, f0, _, _ = synth.sing_phrase("S", [84], [4], qpm=60, expression=False, noises=False, jitter=False,
                                        oversample=oversample, noise_floor_db=None)
    seg = audio[int(1.5 * SAMPLE_RATE):int(3.5 * SAMPLE_RATE)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    freqs = np.fft.rfftfreq(len(seg), 1 / SAMPLE_RATE)
    f0_hz = f0[f0 > 0][20]
    harmonic = np.abs(freqs / f0_hz - np.round(freqs / f0_hz)) * f0_hz < 15
    return 10 * np.log10(spec[~harmonic & (freqs > 50)].sum() / spec[harmonic].sum())


def test_oversampled_source_does_not_alias():
    assert _inharmonic_db(1) > -35.0          # the measurement sees aliasing when it is there
    assert _inharmonic_db(synth.DEFAULTS["oversample"]) < -55.0


def test_lf_pulses_have_zero_net_flow_and_follow_rd():
    table = sv.lf_table()
    frac = np.linspace(0, 1, 20001)[:-1]
    for row in table[::20]:
        pulse = sv.lf_pulses(frac, np.broadcast_to(row, (len(frac), 6)))
        assert abs(pulse.mean()) < 1e-6 and pulse.min() == pytest.approx(-1.0, abs=1e-2)
    te, ta = table[:, 1], table[:, 2]
    soft_range = sv.RD_GRID <= 1.8
    assert np.all(np.diff(te[soft_range]) > 0)     # open quotient grows with Rd (softer voice) ...
    assert np.all(np.diff(ta) > 0)                 # ... and so does the return phase (steeper tilt)


def test_louder_voice_has_flatter_source_spectrum():
    """Rd falls with loudness: shorter open phase, brighter pulses (more energy at 2-5 kHz)."""
    traits = cs.draw_singer_traits("T", np.random.default_rng(0))
    n_ctrl = 2 * int(cs.CTRL_RATE)
    f0 = np.full(n_ctrl, 220.0)
    tilt = {}
    for loudness_db in (-6.0, 6.0):
        rd = np.full(n_ctrl, sv.rd_for_loudness(traits, loudness_db))
        src = sv.glottal_source(f0, rd, np.full(n_ctrl, -200.0), 2 * SAMPLE_RATE - 64, traits,
                                np.random.default_rng(1), jitter=False)
        freqs, power = signal.welch(src, SAMPLE_RATE, nperseg=2048)
        tilt[loudness_db] = _band_db(freqs, power, 2000, 5000) - _band_db(freqs, power, 100, 1000)
    assert tilt[6.0] > tilt[-6.0] + 6.0


def test_formant_cascade_matches_scipy_with_fixed_coefficients():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    freqs = np.tile([[500.0, 1500.0, 2500.0, 3500.0, 4500.0]], (16, 1))
    bws = np.full((16, 5), 80.0)
    r = np.exp(-np.pi * bws[0] / SAMPLE_RATE)
    a1, a2 = -2 * r * np.cos(2 * np.pi * freqs[0] / SAMPLE_RATE), r * r
    sos = np.column_stack([1 + a1 + a2, 0 * r, 0 * r, np.ones(5), a1, a2])
    np.testing.assert_allclose(sv.formant_cascade(x, freqs, bws), signal.sosfilt(sos, x), atol=1e-10)


def test_nasal_tract_has_spectral_zeros_that_no_all_pole_filter_has():
    """The second renderer's tract: numerator roots near the unit circle at the drawn anti-resonances."""
    for seed in range(5):
        sos = sv.nasal_sos(np.random.default_rng(seed))
        zeros = np.concatenate([np.roots(section[:3]) for section in sos[1:]])
        assert np.all(np.abs(zeros) > 0.95)                      # narrow anti-resonances, not mild tilts
        zero_hz = np.sort(np.abs(np.angle(zeros[np.imag(zeros) > 0]))) * SAMPLE_RATE / (2 * np.pi)
        assert sv.NASAL_ZERO_HZ[0] <= zero_hz[0] <= sv.NASAL_ZERO_HZ[1]
        assert sv.SINUS_ZERO_HZ[0] <= zero_hz[1] <= sv.SINUS_ZERO_HZ[1]
        freqs, response = signal.sosfreqz(sos, worN=np.linspace(50, 4000, 4000), fs=SAMPLE_RATE)
        level = 20 * np.log10(np.abs(response))
        for hz in zero_hz:                                       # a dip of > 15 dB against +-300 Hz around it
            at = np.argmin(np.abs(freqs - hz))
            around = (np.abs(freqs - hz) > 250) & (np.abs(freqs - hz) < 350)
            assert level[around].mean() - level[at] > 15, (seed, hz)
        assert abs(level[0]) < 1.0                               # unity gain at (near) DC


def test_nasal_rendering_keeps_the_test_pieces_f0_and_singers(tmp_path):
    from choirbench.data_prep.prepared import read_manifest
    from choirbench.io import read_f0, read_wav

    _prepare(tmp_path / "cascade", workers=1, preview=False)
    _prepare(tmp_path / "nasal", workers=1, preview=False, tract="nasal", splits=["test"])
    nasal = read_manifest(tmp_path / "nasal")
    assert set(nasal["song"]) == {"bwv257"} and set(nasal["split"]) == {"test"}
    for row in nasal.itertuples():
        np.testing.assert_array_equal(read_f0(tmp_path / "nasal" / row.f0), read_f0(tmp_path / "cascade" / row.f0))
        a, _ = read_wav(tmp_path / "nasal" / row.audio)
        b, _ = read_wav(tmp_path / "cascade" / row.audio)
        assert len(a) == len(b) and not np.allclose(a, b, atol=1e-3)
    with pytest.raises(ChoirbenchError, match="datasets.synth-chorales.tract must be one of cascade, nasal"):
        _prepare(tmp_path / "bad", tract="pole-zero")


# ----------------------------------------------------------------------------- dataset format and determinism

TINY = {"pieces_list": {"train": ["bwv255"], "test": ["bwv257"]}, "singers_per_part": 2, "truncate_quarters": 5,
        "seed": 5, "rt60_s": [0.3, 0.5]}


def _prepare(root, **overrides):
    params = resolve_params(synth.DEFAULTS, {**TINY, **overrides}, "datasets.synth-chorales")
    synth.prepare(root, params)
    return params


def test_prepare_writes_the_prepared_format_deterministically(tmp_path):
    from choirbench.data_prep.prepared import check_prepared
    from choirbench.io import read_f0, read_notes, wav_frames

    _prepare(tmp_path / "one", workers=2)
    _prepare(tmp_path / "two", workers=1, preview=False)
    manifest = check_prepared(tmp_path / "one")
    assert sorted(manifest["song"].unique()) == ["bwv255", "bwv257"]
    assert set(manifest.loc[manifest["song"] == "bwv257", "split"]) == {"test"}
    assert len(manifest) == 2 * 4 * 2
    for row in manifest.itertuples():
        a = (tmp_path / "one" / row.audio).read_bytes()
        assert a == (tmp_path / "two" / row.audio).read_bytes()      # same seed -> same bytes, any workers
        n = wav_frames(tmp_path / "one" / row.audio)
        assert n % HOP == 0 and row.duration_s == pytest.approx(n / SAMPLE_RATE)
        f0 = read_f0(tmp_path / "one" / row.f0)
        assert len(f0) == n // HOP and 0.3 < np.mean(f0 > 0) < 0.95
    notes = read_notes(tmp_path / "one" / "score" / "bwv255" / "S.csv")
    assert len(notes) > 3 and np.all(np.diff(notes[:, 0]) > 0)
    assert (tmp_path / "one" / "preview" / "spectrogram.png").stat().st_size > 10_000
    assert (tmp_path / "one" / "preview" / "mixture.wav").is_file()
    # singers of one part differ; a different seed gives other singers
    s1 = (tmp_path / "one" / "audio" / "bwv255" / "S1.wav").read_bytes()
    assert s1 != (tmp_path / "one" / "audio" / "bwv255" / "S2.wav").read_bytes()
    params = resolve_params(synth.DEFAULTS, TINY, "x")
    traits = synth.singer_traits_for(params, "bwv255", "S", 1)
    assert traits.tract_scale == synth.singer_traits_for(params, "bwv255", "S", 1).tract_scale
    assert traits.vibrato_rate_hz != synth.singer_traits_for({**params, "seed": 6}, "bwv255", "S", 1).vibrato_rate_hz


def test_sung_f0_follows_the_written_notes(tmp_path):
    """Every voiced F0 frame lies within a semitone (vibrato, portamento, drift) of the note sounding then."""
    from choirbench.io import read_f0, read_notes
    _prepare(tmp_path, workers=1, preview=False, singers_per_part=1, pieces_list={"train": ["bwv26.6"]})
    for part in "SATB":
        notes = read_notes(tmp_path / "score" / "bwv26.6" / f"{part}.csv")
        f0 = read_f0(tmp_path / "f0" / "bwv26.6" / f"{part}1.csv")
        t = np.arange(len(f0)) * HOP / SAMPLE_RATE
        inside = np.zeros(len(f0), dtype=bool)
        for onset, offset, midi in notes:
            sel = (t >= onset + 0.1) & (t < offset - 0.1) & (f0 > 0)
            inside |= sel
            cents = 1200 * np.log2(f0[sel] / (440 * 2 ** ((midi - 69) / 12)))
            assert np.all(np.abs(cents) < 100), (part, onset, midi)
        assert inside.sum() > 0.5 * np.sum(f0 > 0)


def test_splits_are_by_piece_and_seeded():
    params = resolve_params(synth.DEFAULTS, {}, "x")
    chosen = synth.choose_pieces(params)
    assert {k: len(v) for k, v in chosen.items()} == params["pieces"]
    all_ids = [p for ids in chosen.values() for p in ids]
    assert len(set(all_ids)) == len(all_ids)
    assert chosen == synth.choose_pieces(params)
    assert chosen != synth.choose_pieces({**params, "seed": 1})


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("given, message", [
    ({"pieces_list": {"train": ["bwv99999.9"]}}, "unknown chorale id 'bwv99999.9'"),
    ({"pieces_list": {"train": ["bwv8.6"]}}, "has 5 parts"),
    ({"pieces": {"train": 500, "valid": 0, "test": 0}}, "only"),
    ({"pieces_list": {"train": ["bwv255"], "test": ["bwv255"]}}, "both train and test"),
    ({"singers_per_part": 0}, "singers_per_part"),
    ({"rt60_s": [1.0, 0.2]}, "rt60_s"),
    ({"max_quarters": "long"}, "max_quarters"),
    ({"pieces_list": ["bwv255"]}, "pieces_list must map"),
])
def test_bad_input_gives_one_clear_error(tmp_path, given, message):
    with pytest.raises(ChoirbenchError, match=message.replace("(", r"\(")) as err:  # at load or at prepare
        synth.prepare(tmp_path, resolve_params(synth.DEFAULTS, given, "datasets.synth-chorales", synth.LIMITS))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "manifest.csv").exists()


def test_unknown_config_key_is_rejected():
    with pytest.raises(ChoirbenchError, match="singers"):
        resolve_params(synth.DEFAULTS, {"singers": 3}, "datasets.synth-chorales")


@pytest.mark.benchmark
def test_one_voice_renders_at_least_50x_real_time_per_core():
    import time
    synth.sing_phrase("T", [55], [1])                       # warm the LF tables and filters
    melody = [55 + k for k in SCALE] * 3
    start = time.process_time()
    audio, _, _, _ = synth.sing_phrase("T", melody, [1.0] * len(melody), vowels="aeiou" * 5)
    cpu = time.process_time() - start
    assert len(audio) / SAMPLE_RATE / cpu >= 50.0
