"""Real-dataset converters on small fixtures laid out like each release, and on ../shared/data.

Fixture audio is generated here (harmonic tones following a known F0), written
with the release's names, formats and sample rates; nothing binary is committed.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from choirbench import HOP, PARTS, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep import bach10, csd
from choirbench.data_prep.datasets import prepare
from choirbench.data_prep.f0 import (agreement, duplicate_groups, make_f0, midi_to_hz, notes_to_f0, pyin_f0,
                                     read_f0_table, same_annotation, to_hop_grid)
from choirbench.data_prep.prepared import check_prepared, make_examples, read_manifest
from choirbench.data_prep.release import load_audio
from choirbench.io import read_f0, read_notes, read_wav

PART_HZ = {"S": 523.25, "A": 392.0, "T": 261.63, "B": 130.81}


def tone(hz: float, seconds: float, sr: int, *, start: float = 0.1, stop: float | None = None,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A harmonic tone (with light vibrato) voiced in [start, stop); returns (audio, f0 per sample)."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    stop = seconds - 0.1 if stop is None else stop
    f0 = hz * 2 ** (0.2 / 12 * np.sin(2 * np.pi * 5.0 * t)) * ((t >= start) & (t < stop))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    rng = np.random.default_rng(seed)
    audio = sum(np.sin(k * phase + rng.uniform(0, 6.28)) / k for k in range(1, 8) if k * hz < sr / 2 - 500)
    return (0.2 * audio * (f0 > 0)).astype(np.float32), f0


def write_table(path: Path, times, values, extra=None, *, header: str | None = None, sep: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header] if header else []
    for i, (t, v) in enumerate(zip(times, values)):
        cols = [f"{t:.6f}", f"{v:.4f}"] + ([f"{extra[i]:.3f}"] if extra is not None else [])
        lines.append(sep.join(cols))
    path.write_text("\n".join(lines) + "\n")


def frame_f0(f0_per_sample: np.ndarray, sr: int, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(0, len(f0_per_sample) / sr, hop_s)
    return times, f0_per_sample[np.minimum((times * sr).astype(int), len(f0_per_sample) - 1)]


def write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, subtype="PCM_16")


def voiced_agreement(prepared: Path, song: str, key: str, hz: float) -> float:
    f0 = read_f0(prepared / "f0" / song / f"{key}.csv")
    voiced = f0 > 0
    return float(np.mean(np.abs(1200 * np.log2(f0[voiced] / hz)) < 50)) if voiced.any() else 0.0


# ----------------------------------------------------------------------------- F0 helpers

def test_read_f0_table_variants(tmp_path):
    write_table(tmp_path / "a.csv", [0.0, 0.01, 0.02], [-130.8, 220.0, float("nan")], [0.1, 0.9, 0.5],
                header="time,f0,conf")
    times, hz, conf = read_f0_table(tmp_path / "a.csv")
    assert np.allclose(times, [0, 0.01, 0.02]) and np.allclose(hz, [0, 220, 0]) and np.allclose(conf, [0.1, 0.9, 0.5])
    write_table(tmp_path / "b.f0", [0.0, 0.5], [100.0, 0.0], sep="\t")
    assert np.allclose(read_f0_table(tmp_path / "b.f0")[1], [100, 0])
    (tmp_path / "c.csv").write_text("time,f0\n0.0,abc\n")
    with pytest.raises(ChoirbenchError, match="c.csv"):
        read_f0_table(tmp_path / "c.csv")


def test_to_hop_grid_keeps_gaps_unvoiced():
    # voiced-only table (as Sonic Visualiser exports): 0-1 s and 2-3 s at 10 ms, nothing in between
    times = np.concatenate([np.arange(0, 1, 0.01), np.arange(2, 3, 0.01)])
    grid = to_hop_grid(times, np.full(len(times), 200.0), n_frames=250)
    t = np.arange(250) * HOP / SAMPLE_RATE
    assert np.all(grid[(t > 1.05) & (t < 1.95)] == 0)
    assert np.all(grid[(t > 0.05) & (t < 0.95)] == 200) and np.all(grid[t > 3.05] == 0)


def test_duplicate_detection_is_specific():
    rng = np.random.default_rng(0)
    base = np.where(rng.random(500) > 0.2, 220 * 2 ** (rng.normal(0, 0.05, 500) / 12), 0.0)
    copy = base.copy()
    copy[:30] = 0.0  # a copy may differ in voicing at the edges
    other = np.where(base > 0, base * 2 ** (rng.normal(0, 0.1, 500) / 12), 0.0)  # another singer, same part
    assert same_annotation(base, copy)
    assert not same_annotation(base, other)
    assert duplicate_groups({("T", "2"): base, ("T", "3"): copy, ("T", "1"): other}) == [[("T", "2"), ("T", "3")]]


def test_notes_to_f0():
    f0 = notes_to_f0(np.array([[0.1, 0.5, 69.0], [0.6, 1.0, 57.0]]), n_frames=70)
    t = np.arange(70) * HOP / SAMPLE_RATE
    assert np.all(f0[(t >= 0.1) & (t < 0.5)] == 440.0) and np.allclose(f0[(t >= 0.6) & (t < 1.0)], 220.0)
    assert np.all(f0[(t < 0.1) | ((t >= 0.5) & (t < 0.6)) | (t >= 1.0)] == 0)


# ----------------------------------------------------------------------------- missing data

@pytest.mark.parametrize("kind, words", [("csd", ["Zenodo record 1286570", "CSD_ER_soprano_1.wav"]),
                                         ("cantoria", ["Zenodo record 5851070"]),
                                         ("dagstuhl", ["Zenodo record 4618287", "V1.2.3"]),
                                         ("bach10", ["Bach10", "download: true"]),
                                         ("bcbq", ["commercial", "BC/audio_16kHz"])])
def test_missing_dataset_says_what_to_download_and_where(tmp_path, kind, words):
    with pytest.raises(ChoirbenchError) as err:
        prepare(kind, {"resources": str(tmp_path / "res")}, tmp_path / "out")
    message = str(err.value)
    assert str(tmp_path / "res" / kind) in message and f"datasets.{kind}.root" in message
    for word in words:
        assert word in message
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_unknown_config_key_is_rejected(tmp_path):
    with pytest.raises(ChoirbenchError, match="datasets.csd.bogus"):
        prepare("csd", {"bogus": 1}, tmp_path)


# ----------------------------------------------------------------------------- CSD

CSD_CODES = {"ER": 2.2, "LI": 1.2, "ND": 1.2}  # seconds per fixture song
CSD_PARTS = {"soprano": "S", "alto": "A", "tenor": "T", "bass": "B"}


@pytest.fixture(scope="module")
def csd_release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("csd_release") / "ChoralSingingDataset"
    sr = 44100
    for code, seconds in CSD_CODES.items():
        for name, part in CSD_PARTS.items():
            for n in range(1, 5):
                hz = PART_HZ[part] * 2 ** ((n - 1) * 3 / 12)  # each singer at its own pitch: checkable
                audio, f0 = tone(hz, seconds + 0.01 * n, sr, seed=n)  # lengths differ slightly
                write_wav(root / f"CSD_{code}_{name}_{n}.wav", audio, sr)
                times, values = frame_f0(f0, sr, 256 / sr)
                write_table(root / f"CSD_{code}_{name}_{n}.f0", times, values)
    # the release's bug: Nino Dios tenor 3's F0 file is a copy of tenor 2's
    shutil.copy(root / "CSD_ND_tenor_2.f0", root / "CSD_ND_tenor_3.f0")
    return root.parent


@pytest.fixture(scope="module")
def csd_prepared(csd_release, tmp_path_factory):
    out = tmp_path_factory.mktemp("csd_prepared")
    prepare("csd", {"root": str(csd_release)}, out)
    return out


def test_csd_converts_layout_splits_and_lengths(csd_prepared):
    manifest = check_prepared(csd_prepared)
    assert sorted(manifest["song"].unique()) == ["El_Rossinyol", "Locus_Iste", "Nino_Dios"]
    assert set(manifest["split"]) == {"test"}
    assert sorted(manifest["singer"].unique()) == ["1", "2", "3", "4"]
    assert len(manifest) == 3 * 4 * 4
    er = manifest[manifest["song"] == "El_Rossinyol"]
    # padded to the longest stem (singer 4: 2.24 s at 44.1 kHz -> 16 kHz)
    longest = int(np.ceil(int(2.24 * 44100) * 160 / 441))
    assert er["duration_s"].nunique() == 1 and er["duration_s"].iloc[0] == pytest.approx(longest / SAMPLE_RATE)
    audio, _ = read_wav(csd_prepared / "audio" / "El_Rossinyol" / "S1.wav")
    assert len(audio) == longest
    for part in PARTS:
        for n in (1, 4):
            hz = PART_HZ[part] * 2 ** ((n - 1) * 3 / 12)
            assert voiced_agreement(csd_prepared, "El_Rossinyol", f"{part}{n}", hz) > 0.95


def test_csd_copied_f0_is_reestimated(csd_release, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        prepare("csd", {"root": str(csd_release), "songs": ["ND"]}, tmp_path)
    assert any("T3 is a copy of T2" in r.getMessage() for r in caplog.records)
    t2_hz, t3_hz = PART_HZ["T"] * 2 ** (3 / 12), PART_HZ["T"] * 2 ** (6 / 12)
    assert voiced_agreement(tmp_path, "Nino_Dios", "T2", t2_hz) > 0.95  # the original keeps its annotation
    assert voiced_agreement(tmp_path, "Nino_Dios", "T3", t3_hz) > 0.8   # the copy now follows tenor 3's voice
    assert list(read_manifest(tmp_path)["song"].unique()) == ["Nino_Dios"]


def test_csd_authors_layout_with_crepe_arrays_and_float64_wavs(tmp_path):
    """<Song>/audio_16kHz/<song>_<Voice>_<id>.wav, as the paper's authors kept CSD (schufo/umss)."""
    sr = 16000
    names = {"S": "nino_Soprano_405", "A": "nino_ContraAlt_2-07", "T": "nino_tenor_3-01", "B": "nino_Bajos_1-02"}
    song = tmp_path / "release" / "Nino_Dios"
    for part, stem in names.items():
        audio, f0 = tone(PART_HZ[part], 1.0, sr)
        path = song / "audio_16kHz" / f"{stem}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio.astype(np.float64), sr, subtype="DOUBLE")
        times, values = frame_f0(f0, sr, HOP / sr)
        (song / "crepe_f0_center").mkdir(exist_ok=True)
        np.save(song / "crepe_f0_center" / f"{stem}_frequency.npy", np.full(len(times), PART_HZ[part]))
        np.save(song / "crepe_f0_center" / f"{stem}_confidence.npy", np.where(values > 0, 0.9, 0.2))
    out = tmp_path / "out"
    prepare("csd", {"root": str(tmp_path / "release")}, out)
    manifest = check_prepared(out)
    assert sorted(manifest["part"] + manifest["singer"]) == ["A2", "B1", "S4", "T3"]
    assert dict(pd.read_csv(out / "pieces.csv").values) == {"Nino_Dios": "nino_dios"}
    f0 = read_f0(out / "f0" / "Nino_Dios" / "S4.csv")
    t = np.arange(len(f0)) * HOP / SAMPLE_RATE
    assert np.all(f0[(t > 0.15) & (t < 0.85)] == pytest.approx(PART_HZ["S"])) and f0[0] == 0
    audio, _ = read_wav(out / "audio" / "Nino_Dios" / "B1.wav")
    reference, _ = tone(PART_HZ["B"], 1.0, sr)
    np.testing.assert_allclose(audio, reference, atol=1e-6)  # 64-bit float read as it is


def test_csd_paper_test_singers_give_the_paper_excerpt_count(tmp_path):
    singers = csd.paper_test_singers()
    assert singers == {"El_Rossinyol": "2", "Locus_Iste": "3", "Nino_Dios": "4"}
    # durations of the real songs: 32 + 46 + 24 = 102 non-overlapping 4-s excerpts from the second one on
    durations = {"El_Rossinyol": 134.0, "Locus_Iste": 190.0, "Nino_Dios": 103.0}
    rows = [{"song": s, "part": p, "singer": str(k), "split": "test", "audio": "", "f0": "", "duration_s": d}
            for s, d in durations.items() for p in PARTS for k in range(1, 5)]
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    counts = {song: len(make_examples(tmp_path, 4, "test", seed=0, singer=singer).query("song == @song"))
              for song, singer in singers.items()}
    assert counts == {"El_Rossinyol": 32, "Locus_Iste": 46, "Nino_Dios": 24}


# ----------------------------------------------------------------------------- Cantoria

def test_cantoria_converts_with_both_annotations(tmp_path):
    base = tmp_path / "release" / "CantoriaDataset_v1.0.0"
    sr = 44100
    for code in ("EJB1", "EJB2", "THM"):
        mix = 0
        for part in PARTS:
            audio, f0 = tone(PART_HZ[part], 1.2, sr)
            mix = mix + audio
            write_wav(base / "Audio" / f"Cantoria_{code}_{part}.wav", audio, sr)
            times, values = frame_f0(f0, sr, 0.01)
            write_table(base / "F0_pyin" / f"Cantoria_{code}_{part}.csv", times,
                        np.where(values > 0, values, -values.max()))  # pYIN: negative = unvoiced
            conf = np.where(times < 0.6, 0.9, 0.1)  # CREPE is unsure in the second half
            write_table(base / "F0_crepe" / f"Cantoria_{code}_{part}.csv", times, np.full(len(times), PART_HZ[part]),
                        conf)
        write_wav(base / "Audio" / f"Cantoria_{code}_Mix.wav", mix, sr)  # must be ignored
    out = tmp_path / "pyin"
    prepare("cantoria", {"root": str(tmp_path / "release")}, out)
    manifest = check_prepared(out)
    assert sorted(manifest["song"].unique()) == ["EJB1", "EJB2", "THM"] and set(manifest["singer"]) == {"1"}
    assert dict(manifest.drop_duplicates("song")[["song", "split"]].values) == {
        "EJB1": "train", "EJB2": "train", "THM": "valid"}
    assert dict(pd.read_csv(out / "pieces.csv").values) == {"EJB1": "ejb", "EJB2": "ejb", "THM": "thm"}
    f0 = read_f0(out / "f0" / "EJB1" / "A1.csv")
    t = np.arange(len(f0)) * HOP / SAMPLE_RATE
    assert np.all(f0[(t > 0.15) & (t < 1.05)] > 0) and np.all(f0[t < 0.05] == 0)
    out2 = tmp_path / "crepe"
    prepare("cantoria", {"root": str(tmp_path / "release"), "f0_annotation": "crepe", "songs": ["THM"]}, out2)
    f0 = read_f0(out2 / "f0" / "THM" / "A1.csv")
    t = np.arange(len(f0)) * HOP / SAMPLE_RATE
    assert np.all(f0[t < 0.55] > 0) and np.all(f0[(t > 0.65) & (t < 1.1)] == 0)


def test_cantoria_splits_by_piece_never_by_code():
    from choirbench.data_prep.cantoria import DEFAULTS, piece_splits

    codes = ["EJB1", "EJB2", "LJT1", "LJT2", "THM"]
    splits = piece_splits(codes, {**DEFAULTS, "valid_songs": ["EJB1"], "test_songs": ["LJT"]})
    assert splits == {"EJB1": "valid", "EJB2": "valid", "LJT1": "test", "LJT2": "test", "THM": "train"}
    with pytest.raises(ChoirbenchError, match=r"EJB1, EJB2 are one piece \(EJB\).*\['test', 'valid'\]"):
        piece_splits(codes, {**DEFAULTS, "valid_songs": ["EJB1"], "test_songs": ["EJB2"]})


# ----------------------------------------------------------------------------- Dagstuhl

def test_dagstuhl_fixture_mics_singers_and_fallbacks(tmp_path):
    base = tmp_path / "DagstuhlChoirSet_V1.2.3"
    audio_dir = base / "audio_wav_22050_mono"
    sr = 22050
    take = "DCS_TP_FullChoir_Take02"
    singers = {("S", 1): ["DYN", "LRX"], ("S", 3): ["HSM"], ("A", 2): ["DYN"], ("T", 1): ["LRX"],
               ("B", 4): ["DYN", "HSM"]}
    for (part, n), mics in singers.items():
        hz = PART_HZ[part] * (1.06 if n == 3 else 1.0)
        audio, f0 = tone(hz, 1.5, sr, seed=n)
        times, values = frame_f0(f0, sr, 256 / sr)
        for mic in mics:
            write_wav(audio_dir / f"{take}_{part}{n}_{mic}.wav", audio, sr)
            conf = np.full(len(times), 0.9)
            write_table(base / "annotations_csv_F0_CREPE" / f"{take}_{part}{n}_{mic}.csv", times,
                        np.where(values > 0, values, hz), conf)
        if part == "T":
            write_table(base / "annotations_csv_F0_manual" / f"{take}_{part}{n}_LRX.csv", times, values)
        write_table(base / "annotations_csv_scorerepresentation" / f"{take}_Stereo_STM_{part}.csv",
                    [0.1], [1.4], [60.0])
    write_wav(audio_dir / f"{take}_Stereo_STM.wav", np.zeros(1000, np.float32), sr)  # room mic: ignored
    write_wav(audio_dir / "DCS_LI_Basses_Take01_B1_DYN.wav", np.zeros(1000, np.float32), sr)  # not a setting
    out = tmp_path / "out"
    # singers S3 and B4 are not in the release: this fixture tests the choices, not the md5 index
    prepare("dagstuhl", {"root": str(tmp_path), "require_all_parts": False, "verify": False}, out)
    manifest = check_prepared(out)
    assert sorted(manifest["part"] + manifest["singer"]) == ["A2", "B4", "S1", "S3"]  # T1 has a larynx mic only
    out = tmp_path / "out_lrx"
    prepare("dagstuhl", {"root": str(tmp_path), "mics": ["DYN", "HSM", "LRX"], "verify": False}, out)
    manifest = check_prepared(out)
    assert list(manifest["song"].unique()) == ["TP_FullChoir_Take02"]
    assert sorted(manifest["part"] + manifest["singer"]) == ["A2", "B4", "S1", "S3", "T1"]
    assert pd.read_csv(out / "pieces.csv").to_dict("records") == [{"song": "TP_FullChoir_Take02", "piece": "tebe_poem"}]
    assert set(manifest["split"]) == {"train"}
    audio, _ = read_wav(out / manifest["audio"].iloc[0])
    assert len(audio) == int(np.ceil(int(1.5 * sr) * 16000 / 22050))
    assert voiced_agreement(out, "TP_FullChoir_Take02", "S3", PART_HZ["S"] * 1.06) > 0.95  # HSM-only singer
    f0_t = read_f0(out / "f0" / "TP_FullChoir_Take02" / "T1.csv")
    assert f0_t[:3].max() == 0  # manual annotation wins over CREPE (which is voiced everywhere here)
    assert read_notes(out / "score" / "TP_FullChoir_Take02" / "B.csv").tolist() == [[0.1, 1.4, 60.0]]


def test_dagstuhl_real_excerpt(shared_data, tmp_path):
    source = shared_data / "dagstuhl_excerpts"
    if not source.is_dir():
        pytest.skip("dagstuhl_excerpts not available")
    copy = tmp_path / "copy"  # verifying remembers digests in the release folder: never write into ../shared
    shutil.copytree(source, copy)
    with pytest.raises(ChoirbenchError, match=r"12 file\(s\) differ from Dagstuhl ChoirSet V1.2.3: .*_A2_LRX.csv: "
                                              r"checksum, md5 [0-9a-f]{32}, expected 05272f5c199ff7725863e528e82f5d62"):
        prepare("dagstuhl", {"root": str(copy)}, tmp_path / "verified")  # 1-s excerpts are not the release's files
    prepare("dagstuhl", {"root": str(source), "verify": False}, tmp_path)
    manifest = check_prepared(tmp_path)
    assert sorted(manifest["part"] + manifest["singer"]) == ["A2", "B2", "S1", "T2"]
    assert manifest["duration_s"].iloc[0] == pytest.approx(1.0)
    assert len(read_notes(tmp_path / "score" / "LI_QuartetB_Take04" / "S.csv")) > 0
    f0 = read_f0(tmp_path / "f0" / "LI_QuartetB_Take04" / "T2.csv")
    assert np.all((f0 == 0) | ((f0 > 150) & (f0 < 260)))  # manual tenor F0 around 198 Hz
    assert (f0 > 0).any()


# ----------------------------------------------------------------------------- BC/BQ

def test_bcbq_joins_segments_and_splits(tmp_path, caplog):
    sr = 16000
    layout = {"BC": {(1, "BC001"): 3, (8, "BC008"): 1}, "BQ": {(9, "BQ009"): 1}}
    for name, songs in layout.items():
        for (idx, piece), n_segments in songs.items():
            for k in range(1, n_segments + 1):
                for v, part in zip("satb", PARTS):
                    audio, f0 = tone(PART_HZ[part], 1.0, sr, start=0.0, stop=1.0)
                    if (piece, k, v) == ("BC001", 3, "s"):
                        audio[:] = 0  # like the release's silent 17_BC021_part11_s
                    stem = f"{idx}_{piece}_part{k}_{v}_1ch"
                    write_wav(tmp_path / name / "audio_16kHz" / f"{stem}.wav", audio, sr)
                    if name == "BC":
                        frames = f0[:: HOP][: len(audio) // HOP]
                        (tmp_path / name / "crepe_f0_center").mkdir(exist_ok=True)
                        np.save(tmp_path / name / "crepe_f0_center" / f"{stem}_frequency.npy", frames)
                        np.save(tmp_path / name / "crepe_f0_center" / f"{stem}_confidence.npy",
                                np.full(len(frames), 0.8))
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        prepare("bcbq", {"root": str(tmp_path)}, out)
    manifest = check_prepared(out)
    splits = dict(manifest.drop_duplicates("song")[["song", "split"]].values)
    assert splits == {"BC01_BC001": "train", "BC08_BC008": "valid", "BQ09_BQ009": "valid"}
    durations = dict(manifest.drop_duplicates("song")[["song", "duration_s"]].values)
    assert durations["BC01_BC001"] == pytest.approx(2.0)  # segment 3 left out (silent soprano)
    assert any("segment 3" in r.getMessage() for r in caplog.records)
    assert any("no CREPE F0; estimated with pYIN" in r.getMessage() for r in caplog.records)
    assert voiced_agreement(out, "BC01_BC001", "A1", PART_HZ["A"]) > 0.95
    assert voiced_agreement(out, "BQ09_BQ009", "B1", PART_HZ["B"]) > 0.9


# ----------------------------------------------------------------------------- Bach10 (shared data)

@pytest.fixture(scope="module")
def bach10_root(shared_data):
    root = shared_data / "bach10"
    if not root.is_dir():
        pytest.skip("../shared/data/bach10 is not available")
    return root


@pytest.fixture(scope="module")
def bach10_prepared(bach10_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("bach10")
    prepare("bach10", {"root": str(bach10_root), "songs": ["01", "08"]}, out)
    return out


def test_bach10_converts(bach10_prepared):
    manifest = check_prepared(bach10_prepared)
    assert sorted(manifest["song"].unique()) == ["01-AchGottundHerr", "08-FuerDeinenThron"]
    assert dict(manifest.drop_duplicates("song")[["song", "split"]].values) == {
        "01-AchGottundHerr": "train", "08-FuerDeinenThron": "test"}
    assert set(manifest["singer"]) == {"1"} and sorted(manifest["part"].unique()) == sorted(PARTS)
    # 1 112 495 samples at 44.1 kHz -> 403 627 at 16 kHz
    assert manifest.query("song == '01-AchGottundHerr'")["duration_s"].iloc[0] == pytest.approx(403627 / 16000)
    notes = read_notes(bach10_prepared / "score" / "01-AchGottundHerr" / "S.csv")
    assert notes[0].tolist() == pytest.approx([0.218, 0.898, 72.0])  # the release's .txt: 220-1915 ms, MIDI 72


def test_bach10_f0_agrees_with_pyin(bach10_prepared):
    """>= 90 % of annotated voiced frames within 50 cents of pYIN on the isolated stem (first 12 s)."""
    song = "01-AchGottundHerr"
    n = 12 * SAMPLE_RATE
    for part in PARTS:
        audio, _ = read_wav(bach10_prepared / "audio" / song / f"{part}1.wav", frames=n)
        truth = read_f0(bach10_prepared / "f0" / song / f"{part}1.csv")
        estimate = pyin_f0(audio, part)
        score = agreement(truth[: len(estimate)], estimate)
        assert score >= 0.9, f"{part}: {score:.3f}"


def test_bach10_mixture_is_sum_of_stems(bach10_prepared, bach10_root):
    """The release's mix, resampled the same way, equals the sum of the resampled stems.

    Tolerance: after fitting one gain (the mix could be normalised), the residual
    must be 60 dB below the mix. PCM16 quantisation of five files is ~-90 dB; a
    misaligned or wrongly resampled stem gives ~0 dB.
    """
    song = "01-AchGottundHerr"
    stems = sum(read_wav(bach10_prepared / "audio" / song / f"{p}1.wav")[0] for p in PARTS)
    mix = load_audio(bach10.mixture_path(bach10_root, song))
    assert len(mix) == len(stems)
    gain = float(np.dot(mix, stems) / np.dot(stems, stems))
    residual = np.linalg.norm(mix - gain * stems) / np.linalg.norm(mix)
    assert 0.9 < gain < 1.1 and residual < 1e-3
    shifted = np.linalg.norm(mix[HOP:] - stems[:-HOP]) / np.linalg.norm(mix)
    assert shifted > 0.1  # the check can fail


def test_bach10_corrupt_copy_is_refused(bach10_root, tmp_path):
    copy = tmp_path / "copy" / "01-AchGottundHerr"
    shutil.copytree(bach10_root / "01-AchGottundHerr", copy)
    violin = copy / "01-AchGottundHerr-violin.wav"
    violin.chmod(0o644)
    data = bytearray(violin.read_bytes())
    data[-100] ^= 0xFF
    violin.write_bytes(bytes(data))
    with pytest.raises(ChoirbenchError, match="sha256 mismatch for 01-AchGottundHerr/01-AchGottundHerr-violin.wav"):
        prepare("bach10", {"root": str(tmp_path / "copy"), "songs": ["01"]}, tmp_path / "out")


def test_make_f0_score_and_pyin_cache(bach10_prepared, tmp_path):
    written = make_f0(bach10_prepared, "score")
    assert written == 8
    song = "01-AchGottundHerr"
    truth = read_f0(bach10_prepared / "f0" / song / "S1.csv")
    score = read_f0(bach10_prepared / "f0_score" / song / "S1.csv")
    assert len(score) == len(truth)
    assert agreement(truth, score, tol_cents=100) > 0.85  # performed pitch vs the aligned notes
    assert make_f0(bach10_prepared, "score") == 0  # cached
    # pYIN on a small prepared set (one short song) and its cache
    small = tmp_path / "small"
    (small / "audio" / "s").mkdir(parents=True)
    rows = []
    for part in PARTS:
        audio, _ = tone(PART_HZ[part], 1.0, SAMPLE_RATE)
        sf.write(small / "audio" / "s" / f"{part}1.wav", audio, SAMPLE_RATE, subtype="FLOAT")
        rows.append({"song": "s", "part": part, "singer": "1", "split": "test", "audio": f"audio/s/{part}1.wav",
                     "f0": f"f0/s/{part}1.csv", "duration_s": 1.0})
    pd.DataFrame(rows).to_csv(small / "manifest.csv", index=False)
    assert make_f0(small, "pyin") == 4
    f0 = read_f0(small / "f0_pyin" / "s" / "T1.csv")
    assert len(f0) == SAMPLE_RATE // HOP + 1
    assert np.median(np.abs(1200 * np.log2(f0[f0 > 0] / PART_HZ["T"]))) < 30
    assert make_f0(small, "pyin") == 0
    with pytest.raises(ChoirbenchError, match="aligned notes"):
        make_f0(small, "score")
    assert midi_to_hz(69) == 440.0


def test_bach10_stale_url_names_the_fallback(tmp_path):
    params = dict(bach10.DEFAULTS, download=True, resources=str(tmp_path),
                  url=(tmp_path / "gone" / "Bach10.zip").as_uri())
    with pytest.raises(ChoirbenchError) as err:
        prepare("bach10", params, tmp_path / "out")
    message = str(err.value)
    assert "datasets.bach10.url" in message and "may be stale" in message
    assert f"{tmp_path / 'bach10'}/" in message and "datasets.bach10.root" in message
    assert "\n" not in message
