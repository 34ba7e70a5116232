"""The `stems` dataset kind: any choir's multitracks (made here: tones of known F0 in varied formats)."""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.data_prep.datasets import prepare
from choirbench.data_prep.prepared import check_prepared, make_examples
from choirbench.data_prep.stems import part_of
from choirbench.io import read_f0, read_notes, read_wav

SECONDS = 1.5


def tone(hz: float, sr: int, seconds: float = SECONDS, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    voiced = (t > 0.2) & (t < seconds - 0.2)
    x = sum(np.sin(2 * np.pi * k * hz * t) / k for k in range(1, 6)) * 0.15 * voiced
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def write(path: Path, audio: np.ndarray, sr: int, subtype: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, subtype=subtype)


@pytest.fixture()
def choir(tmp_path) -> Path:
    """Two songs: every rate, bit depth and channel count a user may hand over; F0 file, notes, mix."""
    root = tmp_path / "my_choir"
    song = root / "Ave"
    write(song / "Soprano.wav", tone(523.25, 44100, channels=2), 44100, "PCM_24")
    write(song / "alto_1.wav", tone(392.0, 22050), 22050, "DOUBLE")
    write(song / "ALTO-2.wav", tone(349.23, 22050), 22050, "FLOAT")
    write(song / "T.wav", tone(261.63, 16000), 16000, "PCM_16")
    write(song / "bass.wav", tone(130.81, 48000), 48000, "PCM_16")
    mix = sum(tone(hz, 48000) for hz in (523.25, 392.0, 349.23, 261.63, 130.81))
    write(song / "mix.wav", 0.5 * mix, 48000, "FLOAT")  # a normalised mix: checked up to a gain
    times = np.arange(0, SECONDS, 0.01)
    # the tenor's F0 as CREPE writes it: a frequency for every frame, the confidence in the third column
    pd.DataFrame({"time": times, "frequency": 261.63, "confidence": np.where((times > 0.2) & (times < 1.3), 0.9, 0.1)}
                 ).to_csv(song / "T.csv", index=False)
    (song / "soprano.notes.csv").write_text("onset_s,offset_s,midi\n0.2,1.3,72\n")
    other = root / "Kyrie"
    for name, hz in (("S1", 440.0), ("A1", 330.0), ("T1", 220.0), ("B1", 110.0)):
        write(other / f"{name}.wav", tone(hz, 16000), 16000, "PCM_16")
    return root


def test_part_names():
    assert part_of("Soprano") == ("S", "1") and part_of("alto_2") == ("A", "2") and part_of("ALTO-2") == ("A", "2")
    assert part_of("Tenor 3") == ("T", "3") and part_of("b") == ("B", "1") and part_of("S02") == ("S", "2")
    assert part_of("baritone") is None and part_of("mix") is None and part_of("S1_take2") is None


def _cents_ok(f0: np.ndarray, hz: float) -> float:
    voiced = f0 > 0
    return float(np.mean(np.abs(1200 * np.log2(f0[voiced] / hz)) < 50)) if voiced.any() else 0.0


def test_stems_kind_converts_any_format(choir, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="choirbench"):
        prepare("stems", {"root": str(choir), "f0_confidence": 0.5, "valid_songs": ["Kyrie"]}, out)
    manifest = check_prepared(out)
    assert sorted(zip(manifest["song"], manifest["part"], manifest["singer"], manifest["split"])) == [
        ("Ave", "A", "1", "test"), ("Ave", "A", "2", "test"), ("Ave", "B", "1", "test"), ("Ave", "S", "1", "test"),
        ("Ave", "T", "1", "test"), ("Kyrie", "A", "1", "valid"), ("Kyrie", "B", "1", "valid"),
        ("Kyrie", "S", "1", "valid"), ("Kyrie", "T", "1", "valid")]
    assert np.allclose(manifest["duration_s"], SECONDS)
    audio, sr = read_wav(out / "audio" / "Ave" / "S1.wav")
    assert sr == SAMPLE_RATE and len(audio) == int(SECONDS * SAMPLE_RATE)
    # the stereo 24-bit soprano: both channels averaged, resampled, same level
    assert abs(np.max(np.abs(audio)) - np.max(np.abs(tone(523.25, 16000)))) < 0.01
    log = caplog.text
    assert "Soprano.wav (PCM_24, 1.50 s): 2 channels averaged to mono; resampled from 44100 Hz to 16000 Hz" in log
    assert "alto_1.wav (DOUBLE, 1.50 s): resampled from 22050 Hz to 16000 Hz" in log
    assert "T.wav (PCM_16, 1.50 s): mono 16000 Hz as is" in log
    # resampled from 3 rates, the stems still sum to the mix up to its gain
    assert re.search(r"Ave: mix.wav equals the sum of the stems within 0\.\d % \(RMS, after a gain of 0.5\)", log)
    # F0: pYIN where no file was given (right pitch), the tenor's CREPE file with its confidence threshold
    for key, hz in (("S1", 523.25), ("A1", 392.0), ("A2", 349.23), ("B1", 130.81)):
        f0 = read_f0(out / "f0" / "Ave" / f"{key}.csv")
        assert _cents_ok(f0, hz) > 0.95 and np.mean(f0 > 0) > 0.5, key
        assert np.array_equal(read_f0(out / "f0_pyin" / "Ave" / f"{key}.csv"), f0)  # the f0_source: pyin cache
    tenor = read_f0(out / "f0" / "Ave" / "T1.csv")
    grid = np.arange(len(tenor)) * HOP / SAMPLE_RATE
    assert np.all(tenor[(grid > 0.25) & (grid < 1.25)] == 261.63) and np.all(tenor[(grid < 0.15) | (grid > 1.35)] == 0)
    assert not (out / "f0_pyin" / "Ave" / "T1.csv").exists()   # given, not estimated
    assert np.allclose(read_notes(out / "score" / "Ave" / "S.csv"), [[0.2, 1.3, 72]])
    # the excerpts of the test split (one SATB combination per singer choice)
    examples = make_examples(out, 4, "test", seed=0, excerpt_s=1.0, skip_first=False)
    assert list(examples["song"]) == ["Ave"] and examples["parts"].iloc[0] == "S-A-T-B"


def test_one_song_folder_as_root_and_a_matching_mix(tmp_path, caplog):
    song = tmp_path / "concert_2024"
    stems = {name: tone(hz, 22050) for name, hz in (("soprano", 440.0), ("alto", 330.0), ("tenor", 220.0),
                                                   ("bass", 110.0))}
    for name, audio in stems.items():
        write(song / f"{name}.wav", audio, 22050, "PCM_16")
    write(song / "mix.wav", sum(stems.values()), 22050, "FLOAT")
    with caplog.at_level(logging.INFO, logger="choirbench"):
        prepare("stems", {"root": str(song)}, tmp_path / "out")
    manifest = check_prepared(tmp_path / "out")
    assert set(manifest["song"]) == {"concert_2024"} and set(manifest["split"]) == {"test"}
    assert "mix.wav equals the sum of the stems within 0.0 % (RMS, after a gain of 1)" in caplog.text


@pytest.mark.parametrize("files, message", [
    ({"S.wav": 1, "baritone.wav": 1}, "baritone.wav: 'baritone' is not a part name; name each stem soprano"),
    ({"S.wav": 1, "soprano.wav": 1}, "S.wav and soprano.wav both name part S singer 1; number the singers"),
    ({"S1.wav": 1, "S2.csv": "time,f0\n0,440\n"}, "S2.csv: an F0 file must be named like its stem (e.g. S1.csv next "
                                                 "to S1.wav), and there is no S2.wav"),
    ({"S1.wav": 1, "S1.csv": "time,f0\n0,440\n900,440\n"}, "S1.csv, column 'time': the time axis runs to 900 s "
                                                          "but S1.wav lasts 1.500 s"),
    ({"S1.wav": 1, "S1.notes.csv": "onset_s,offset_s,midi\n"}, "S1.notes.csv: notes are per part"),
])
def test_stems_kind_refuses_what_it_cannot_read_right(tmp_path, files, message):
    song = tmp_path / "root" / "song"
    song.mkdir(parents=True)
    for name, content in files.items():
        if name.endswith(".wav"):
            write(song / name, tone(440.0, 16000), 16000, "PCM_16")
        else:
            (song / name).write_text(content)
    with pytest.raises(ChoirbenchError) as err:
        prepare("stems", {"root": str(tmp_path / "root")}, tmp_path / "out")
    assert message in str(err.value)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_f0_files_mode_requires_every_file(choir, tmp_path):
    with pytest.raises(ChoirbenchError, match=r"Ave: no F0 file for alto_1.wav, ALTO-2.wav, bass.wav, Soprano.wav "
                                              r"\(f0: files requires one per stem, e.g. alto_1.csv\)"):
        prepare("stems", {"root": str(choir), "f0": "files", "songs": ["Ave"]}, tmp_path / "out")


def test_f0_from_the_mixture_goes_through_the_voice_assignment_hook(choir, tmp_path, monkeypatch):
    from choirbench.data_prep import voice_assignment

    calls = []

    def mixture_f0(mixture, sr, parts, n_frames):
        calls.append((len(mixture), sr, tuple(parts), n_frames))
        return {part: np.full(n_frames, 100.0 + i) for i, part in enumerate(parts)}

    monkeypatch.setattr(voice_assignment, "mixture_f0", mixture_f0)
    prepare("stems", {"root": str(choir), "f0": "mixture", "songs": ["Kyrie"]}, tmp_path / "out")
    n = int(SECONDS * SAMPLE_RATE)
    assert calls == [(n, SAMPLE_RATE, ("S", "A", "T", "B"), n // HOP + 1)]
    assert np.all(read_f0(tmp_path / "out" / "f0" / "Kyrie" / "T1.csv") == 102.0)


def test_rossinyol_sections_are_read_by_the_stems_kind(shared_data, tmp_path):
    """The real choir of ../shared: the four section stems and the mix are found and read (not evaluated)."""
    from choirbench.data_prep.stems import load_stem, song_files, song_folders

    folders = song_folders(shared_data / "csd_rossinyol_sections")
    assert list(folders) == ["csd_rossinyol_sections"]
    stems, mix, f0, notes = song_files(folders["csd_rossinyol_sections"])
    assert sorted(stems) == [("A", "1"), ("B", "1"), ("S", "1"), ("T", "1")] and mix.name == "mix.wav"
    assert not f0 and not notes
    audio = {key: load_stem(path) for key, path in stems.items()}
    lengths = {len(a) for a in audio.values()}
    assert len(lengths) == 1 and abs(lengths.pop() / SAMPLE_RATE - 137.0) < 0.5
    from choirbench.data_prep.stems import check_mix

    assert check_mix("rossinyol", mix, sum(audio.values()), 0.1) < 0.05  # AAC-decoded: within a few per cent


def test_rossinyol_config_runs_the_untrained_methods_at_J4(tmp_path):
    """config/rossinyol.yaml: the stems kind, pYIN F0, J = 4, nothing trained (a dry run; no data needed)."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    work = tmp_path / "wf"
    work.mkdir()
    shutil.copy(root / "Snakefile", work)
    shutil.copytree(root / "workflow", work / "workflow")
    shutil.copytree(root / "config", work / "config")
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile", "config/rossinyol.yaml"],
                         cwd=work, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-2000:]
    for method in ("mixture", "oracle", "nmf1", "nmf2"):
        assert f"results/metrics/rossinyol/{method}/seed0/J4.parquet" in dry.stdout
    assert "J2.parquet" not in dry.stdout and "rule train:" not in dry.stdout
    assert "f0_pyin/.complete" in dry.stdout
