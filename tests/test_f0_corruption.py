"""Each F0 corruption does exactly what its spec says on a constructed F0 track."""
import json

import numpy as np
import pandas as pd
import pytest

from choirbench import ChoirbenchError
from choirbench.data_prep.f0_corruption import (DEFAULT_SEGMENT, F0_CEIL_HZ, F0_FLOOR_HZ, Corruption, corrupt_f0,
                                                excerpt_seed, parse_corruption)
from choirbench.data_prep.prepared import make_examples
from choirbench.harness import read_entry, separate_examples
from choirbench.cli import main
from choirbench.io import read_wav


def constructed_f0() -> np.ndarray:
    """Four voices over 300 frames: a steady note with a rest, a ramp, a low bass, a silent voice."""
    T = 300
    f0 = np.zeros((4, T))
    f0[0, 20:280] = 440.0
    f0[0, 120:140] = 0.0                       # a rest inside the note
    f0[1] = np.linspace(100.0, 400.0, T)       # voiced everywhere, every value distinct
    f0[2, 100:200] = 70.0                      # a low bass: -60 Hz would go below the floor
    return f0                                  # voice 3 never sings


F0 = constructed_f0()
VOICED = F0 > 0


def expected_count(share, n):
    return int(np.floor(share * n + 0.5))


def test_offset_hz_moves_every_voiced_frame_and_nothing_else():
    out = corrupt_f0(F0, "offset_hz:+12")
    assert np.array_equal(out[~VOICED], F0[~VOICED])
    assert np.allclose(out[VOICED], F0[VOICED] + 12.0)
    low = corrupt_f0(F0, "offset_hz:-60")
    assert np.allclose(low[2, 100:200], F0_FLOOR_HZ)              # 70 - 60 = 10 Hz, clipped: still voiced
    assert np.allclose(low[0][VOICED[0]], 380.0) and np.all(low[3] == 0)


def test_offset_cents_multiplies_by_the_ratio():
    out = corrupt_f0(F0, "offset_cents:-50")
    assert np.allclose(out[VOICED], F0[VOICED] * 2 ** (-50 / 1200))
    assert np.array_equal(out[~VOICED], F0[~VOICED])
    assert np.allclose(corrupt_f0(F0, "offset_cents:+1200")[VOICED], 2 * F0[VOICED])


@pytest.mark.parametrize("octaves,share", [(1, 0.2), (-1, 0.5), (3, 0.25), (-3, 1.0), (2, 0.33)])
def test_octave_errors_hit_the_stated_share_of_voiced_frames(octaves, share):
    out = corrupt_f0(F0, f"octave:{octaves:+d}@{share}", seed=3)
    for j in range(4):
        changed = out[j] != F0[j]
        n_voiced = int(VOICED[j].sum())
        target = np.clip(F0[j] * 2.0 ** octaves, F0_FLOOR_HZ, F0_CEIL_HZ)
        hit_exact = np.isclose(out[j], target) & VOICED[j]
        # a hit frame whose clipped value equals the original would not count as changed; none here
        assert hit_exact.sum() == expected_count(share, n_voiced), j
        assert np.array_equal(out[j][~hit_exact], F0[j][~hit_exact])
        assert not np.any(changed & ~VOICED[j])                  # unvoiced frames never touched
    if octaves == -3:
        assert np.allclose(out[2, 100:200], F0_FLOOR_HZ)         # 70 / 8 Hz clipped to the floor


def test_octave_errors_come_in_whole_segments_of_voiced_frames():
    out = corrupt_f0(F0, "octave:+1@0.4", seed=7)
    for j in range(3):
        idx = np.flatnonzero(VOICED[j])
        hit = out[j, idx] != F0[j, idx]
        blocks = [hit[i:i + DEFAULT_SEGMENT] for i in range(0, len(idx), DEFAULT_SEGMENT)]
        partial = [b for b in blocks if 0 < b.sum() < len(b)]
        assert len(partial) <= 1                                   # only the last segment taken is cut short
        for b in partial:                                          # ... and it is cut to a prefix
            assert np.all(b[:b.sum()]) and not np.any(b[b.sum():])
    # segments of one frame: the hits scatter (far more runs than with 16-frame segments)
    runs = lambda x: int(np.sum(np.diff(np.concatenate([[0], x.astype(int)])) == 1))
    scattered = corrupt_f0(F0, "octave:+1@0.4~1", seed=7)
    assert runs(scattered[1] != F0[1]) > 3 * runs(out[1] != F0[1])


@pytest.mark.parametrize("spec,share", [("missing:0.3", 0.3), ("missing:0.5~1", 0.5), ("missing:1", 1.0)])
def test_missing_zeroes_the_stated_share_of_voiced_frames(spec, share):
    out = corrupt_f0(F0, spec, seed=1)
    for j in range(4):
        lost = VOICED[j] & (out[j] == 0)
        assert lost.sum() == expected_count(share, VOICED[j].sum())
        assert np.array_equal(out[j][~lost], F0[j][~lost])


def test_voicing_flips_the_stated_share_of_frames_and_borrows_the_nearest_f0():
    out = corrupt_f0(F0, "voicing:0.1", seed=2)
    T = F0.shape[1]
    for j in range(3):
        flipped = (out[j] > 0) != VOICED[j]
        assert flipped.sum() == expected_count(0.1, T)
        assert np.array_equal(out[j][~flipped], F0[j][~flipped])
        gained = np.flatnonzero(flipped & ~VOICED[j])
        voiced_idx = np.flatnonzero(VOICED[j])
        for t in gained:                                            # nearest voiced frame, the earlier on a tie
            nearest = voiced_idx[np.argmin(np.abs(voiced_idx - t))]
            assert out[j, t] == F0[j, nearest]
    assert np.all(out[3] == 0)                                      # never voiced: nothing to borrow
    # ties go to the earlier frame: a rest of two frames between 100 Hz and 200 Hz, both flipped
    track = np.array([[100.0, 0.0, 0.0, 0.0, 200.0]])
    assert corrupt_f0(track, "voicing:1").tolist() == [[0.0, 100.0, 100.0, 200.0, 0.0]]


@pytest.mark.parametrize("spec", ["octave:+1@0.3", "missing:0.3", "voicing:0.2"])
def test_seeds_reproduce_and_differ(spec):
    a = corrupt_f0(F0, spec, seed=(0, 11))
    assert np.array_equal(a, corrupt_f0(F0, spec, seed=(0, 11)))
    assert not np.array_equal(a, corrupt_f0(F0, spec, seed=(1, 11)))
    assert not np.array_equal(a, corrupt_f0(F0, spec, seed=(0, 12)))
    assert excerpt_seed(0, "song1_SATB_0004000ms") == excerpt_seed(0, "song1_SATB_0004000ms")
    assert excerpt_seed(0, "song1_SATB_0004000ms") != excerpt_seed(0, "song1_SATB_0008000ms")


def test_smaller_shares_hit_a_subset_of_larger_ones():
    small = corrupt_f0(F0, "missing:0.2", seed=4) == 0
    large = corrupt_f0(F0, "missing:0.6", seed=4) == 0
    assert np.all(large[small]) and large.sum() > small.sum()


@pytest.mark.parametrize("spec", ["none", "offset_hz:0", "offset_cents:-0", "octave:+1@0", "octave:0@0.5",
                                  "missing:0", "voicing:0"])
def test_zero_size_is_the_identity(spec):
    assert np.array_equal(corrupt_f0(F0, spec, seed=5), F0)


def test_input_untouched_and_dtype_kept():
    f0 = F0.astype(np.float32)
    before = f0.copy()
    out = corrupt_f0(f0, "octave:-1@0.5")
    assert np.array_equal(f0, before) and out.dtype == np.float32


@pytest.mark.parametrize("f0", [np.zeros(10), np.full((1, 5), np.nan), -np.ones((1, 5))])
def test_bad_f0_is_refused(f0):
    with pytest.raises(ChoirbenchError, match="F0 to corrupt"):
        corrupt_f0(f0, "offset_hz:+3")


@pytest.mark.parametrize("spec", ["none", "offset_hz:+12", "offset_hz:-1.5", "offset_cents:-50", "octave:+1@0.2",
                                  "octave:-3@1", "missing:0.3", "missing:0.3~1", "voicing:0.1", "voicing:0.1~4"])
def test_specs_round_trip(spec):
    c = parse_corruption(spec)
    assert c.spec == spec
    assert parse_corruption(c.label) == c and ":" not in c.label


def test_parse_fills_the_fields():
    assert parse_corruption("octave:-2@0.25") == Corruption("octave", -2.0, 0.25, DEFAULT_SEGMENT)
    assert parse_corruption("missing:0.3~1") == Corruption("missing", 0.0, 0.3, 1)
    assert parse_corruption("voicing:0.1").segment == 1
    assert parse_corruption("offset_hz:12").size == 12.0 and parse_corruption("missing:0.4").size == 0.4


@pytest.mark.parametrize("spec,message", [
    ("ofset_hz:+12", "unknown kind 'ofset_hz'"), ("octave:+1", "cannot read"), ("octave:+1.5@0.2", "cannot read"),
    ("octave:+4@0.2", "from -3 to"), ("missing:1.5", r"in \[0, 1\]"), ("missing:0.3~0", "at least 1 frame"),
    ("offset_hz:twelve", "cannot read"), ("none:1", "cannot read"), ("", "unknown kind"),
    ("offset_hz:+12 Hz", "cannot read")])
def test_typos_are_one_clear_error(spec, message):
    with pytest.raises(ChoirbenchError, match=message) as err:
        parse_corruption(spec)
    assert repr(spec) in str(err.value)


def test_separate_set_corrupts_the_f0_the_method_sees(tmp_path, tiny_dataset):
    """An nmf2 given an F0 an octave off separates differently; `none` changes nothing; a typo fails first."""
    examples = tmp_path / "J2_test.csv"
    make_examples(tiny_dataset, 2, "test", seed=0, skip_first=False, max_examples=1).to_csv(examples, index=False)
    entry_path = tmp_path / "nmf2.json"
    entry_path.write_text(json.dumps({"id": "nmf2", "model": "nmf2", "params": {"iterations": 3}}))
    entry = read_entry(entry_path)
    outs = {}
    for name, spec in [("clean", None), ("none", "none"), ("octave", "octave:+1@1")]:
        separate_examples(tiny_dataset, examples, entry, None, tmp_path / name, f0_corruption=spec)
        outs[name] = np.stack([read_wav(p)[0] for p in sorted((tmp_path / name).rglob("*.wav"))])
    assert np.array_equal(outs["clean"], outs["none"])
    assert np.abs(outs["clean"] - outs["octave"]).max() > 1e-3
    with pytest.raises(ChoirbenchError, match="unknown kind"):
        separate_examples(tiny_dataset, examples, entry, None, tmp_path / "typo", f0_corruption="octav:+1@1")
    assert not (tmp_path / "typo").exists()


def test_cli_separates_and_scores_several_corruptions_in_one_call(tmp_path, tiny_dataset):
    """separate-set and evaluate take several specs / folders (one process for a whole grid);
    evaluate --metrics SI-SDR gives exactly the SI-SDR rows of the full evaluation."""
    examples = tmp_path / "J2_test.csv"
    make_examples(tiny_dataset, 2, "test", seed=0, skip_first=False, max_examples=1).to_csv(examples, index=False)
    entry = tmp_path / "mixture.json"
    entry.write_text(json.dumps({"id": "mixture", "model": "mixture"}))
    common = ["separate-set", "--data", str(tiny_dataset), "--examples", str(examples), "--method-config", str(entry)]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*common, "--out", str(a), str(b), "--f0-corruption", "none", "octav:+1@1"]) == 2
    assert main([*common, "--out", str(a), "--f0-corruption", "none", "missing:0.5"]) == 2
    assert not a.exists() and not b.exists()                      # every problem found before any work
    assert main([*common, "--out", str(a), str(b), "--f0-corruption", "none", "missing:0.5"]) == 0
    assert len(list(a.rglob("*.wav"))) == len(list(b.rglob("*.wav"))) == 2
    score = ["evaluate", "--data", str(tiny_dataset), "--examples", str(examples), "--dataset", "tiny",
             "--method", "mixture", "--seed", "0", "--J", "2"]
    assert main([*score, "--estimates", str(a), str(b), "--out", str(tmp_path / "a.parquet"),
                 str(tmp_path / "b.parquet"), "--metrics", "SI-SDR"]) == 0
    assert main([*score, "--estimates", str(a), "--out", str(tmp_path / "full.parquet")]) == 0
    assert main([*score, "--estimates", str(a), "--out", str(tmp_path / "x.parquet"), "--metrics", "SISDR"]) == 2
    only, full = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "full.parquet")
    assert set(only["metric"]) == {"SI-SDR"} and {"SDR", "SI-SDR"} <= set(full["metric"])
    pd.testing.assert_frame_equal(only, full[full["metric"] == "SI-SDR"].reset_index(drop=True))
    assert (tmp_path / "b.parquet").is_file()
