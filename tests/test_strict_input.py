"""Every user file is read by one strict reader (choirbench.io): read right, or refused in one line.

One test (or more) per case of issue 13, item 4, with the value read or the exact message.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.cli import main
from choirbench.data_prep import f0 as f0_module
from choirbench.data_prep.datasets import prepare
from choirbench.io import read_f0, read_f0_table, read_notes, read_release_f0, read_wav, write_f0
from conftest import make_tiny_dataset

UNVOICED = "0, a negative number, NaN or an empty cell"


def _chord(path: Path, seconds: float, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)
    return path


def _separate(capsys, mix, f0, method="mixture", *extra):
    code = main(["separate", str(mix), "--f0", str(f0), "--method", method, *extra, "--out", str(Path(mix).parent / "out")])
    return code, capsys.readouterr().err.strip()


def _f0_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- empty and too-short WAVs

def test_empty_wav_is_refused_by_name(tmp_path, capsys):
    sf.write(tmp_path / "mix.wav", np.zeros(0, np.float32), 16000)
    f0 = _f0_csv(tmp_path / "f0.csv", "time_s,alto\n0.0,220\n")
    code, err = _separate(capsys, tmp_path / "mix.wav", f0, "nmf2")
    assert code == 2
    assert err == f"choirbench separate: error: {tmp_path / 'mix.wav'}: holds no samples (an empty WAV); give the recording to separate"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method, params, window", [("nmf2", None, 2048), ("nmf1", '{"n_fft": 4096}', 4096)])
def test_wav_shorter_than_the_stft_window_is_refused(tmp_path, capsys, method, params, window):
    mix = _chord(tmp_path / "mix.wav", 0.1, sr=22050)  # 2205 samples at 22.05 kHz = 1600 at 16 kHz
    f0 = _f0_csv(tmp_path / "f0.csv", "time_s,alto\n0.0,220\n0.05,220\n")
    code, err = _separate(capsys, mix, f0, method, *(["--params", params] if params else []))
    assert code == 2
    assert err == (f"choirbench separate: error: {mix}: 0.100 s is shorter than the STFT window of method {method} "
                   f"({window} samples at 16000 Hz = {window / 16000:.3f} s); give a recording of at least that length")
    # long enough for the window: separated
    mix = _chord(tmp_path / "mix.wav", window / 16000 + 0.01)
    code, err = _separate(capsys, mix, f0, method, *(["--params", params] if params else []))
    assert code == 0, err


# ----------------------------------------------------------------------------- an estimator's own layout

def test_crepe_layout_renamed_to_time_s_is_refused(tmp_path, capsys):
    mix = _chord(tmp_path / "mix.wav", 1.0)
    f0 = _f0_csv(tmp_path / "f0.csv", "time_s,frequency,confidence\n0.0,220.1,0.9\n0.01,220.3,0.91\n")
    code, err = _separate(capsys, mix, f0)
    assert code == 2
    assert err == (f"choirbench separate: error: {f0}, column 'confidence': holds a confidence or voicing value, "
                   f"not a voice's F0 (the layout of an F0 estimator's own output); keep time_s, then one column "
                   f"per voice (e.g. time_s,soprano,alto), F0 in Hz, with unvoiced frames written as {UNVOICED}")


@pytest.mark.parametrize("value", ["0.9", "30", "2500"])
def test_f0_outside_the_singing_range_is_refused(tmp_path, value):
    path = _f0_csv(tmp_path / "f0.csv", f"time_s,soprano,bass\n0.0,440,110\n0.01,441,{value}\n")
    with pytest.raises(ChoirbenchError) as err:
        read_f0_table(path)
    assert str(err.value) == (f"{path}, line 3, column 'bass': {float(value):g} Hz is outside the voiced F0 range "
                              f"40-2000 Hz; this column must hold F0 in Hz, with unvoiced frames written as {UNVOICED}")


@pytest.mark.parametrize("header, message", [
    ("time_s,alto,alto", ", column 'alto': voice 'alto' appears twice (as 'alto'); voice names must be unique"),
    ("time_s,alto,../b", ", column '../b': a voice name may hold only letters, digits, '-' and '_' (it names the "
                         "output file ../b.wav); rename the column"),
    ("time,alto,bass", ": the first column must be time_s (seconds), found 'time'; expected time_s, then one column "
                       "per voice (e.g. time_s,soprano,alto), F0 in Hz"),
])
def test_voice_columns_are_checked(tmp_path, header, message):
    path = _f0_csv(tmp_path / "f0.csv", f"{header}\n0.0,220,110\n")
    with pytest.raises(ChoirbenchError) as err:
        read_f0_table(path)
    assert str(err.value) == f"{path}{message}"


# ----------------------------------------------------------------------------- the time axis

def test_times_in_milliseconds_are_refused(tmp_path, capsys):
    mix = _chord(tmp_path / "mix.wav", 2.0)
    times_ms = np.arange(0, 2000, 10)
    pd.DataFrame({"time_s": times_ms, "alto": 330.0, "bass": 220.0}).to_csv(tmp_path / "f0.csv", index=False)
    code, err = _separate(capsys, mix, tmp_path / "f0.csv")
    assert code == 2
    assert err == (f"choirbench separate: error: {tmp_path / 'f0.csv'}, column 'time_s': the time axis runs to 1990 s "
                   f"but mix.wav lasts 2.000 s; times must be in seconds from the start of that recording "
                   f"(these look like milliseconds: divide the times by 1000)")


def test_time_axis_must_fit_the_recording_but_may_end_early(tmp_path):
    path = _f0_csv(tmp_path / "f0.csv", "time_s,alto\n0.0,220\n1.0,220\n3.0,220\n")
    with pytest.raises(ChoirbenchError) as err:
        read_f0_table(path, duration_s=2.0, audio="mix.wav")
    assert str(err.value) == (f"{path}, column 'time_s': the time axis runs to 3 s but mix.wav lasts 2.000 s; "
                              f"times must be in seconds from the start of that recording")
    # ends within 0.25 s after the recording (estimators frame the end differently), or early: accepted
    times, f0, names = read_f0_table(_f0_csv(tmp_path / "g.csv", "time_s,alto\n0.0,220\n2.2,220\n"), duration_s=2.0)
    assert names == ["alto"] and np.allclose(times, [0, 2.2])
    assert read_f0_table(_f0_csv(tmp_path / "h.csv", "time_s,alto\n0.0,220\n0.5,220\n"), duration_s=2.0)[1].shape == (1, 2)


def test_times_out_of_order_are_refused(tmp_path):
    path = _f0_csv(tmp_path / "f0.csv", "time_s,alto\n0.0,220\n0.02,220\n0.01,220\n")
    with pytest.raises(ChoirbenchError) as err:
        read_f0_table(path)
    assert str(err.value) == (f"{path}, line 4, column 'time_s': time 0.01 s does not come after the previous row's "
                              f"0.02 s; rows must be in time order, one per frame")


def test_a_release_f0_in_milliseconds_is_refused_by_the_converter(tmp_path):
    path = _f0_csv(tmp_path / "a.f0", "0.0,220\n500.0,220\n1000.0,0\n")
    with pytest.raises(ChoirbenchError, match=r"a.f0, column 'column 1': the time axis runs to 1000 s but CSD_ER_alto_1.wav "
                                              r"lasts 1.000 s; .*milliseconds"):
        f0_module.read_f0_table(path, duration_s=1.0, audio="CSD_ER_alto_1.wav")


# ----------------------------------------------------------------------------- empty cells stay in their column

PYIN_LIKE = "time,f0,confidence\n0.00,220.0,0.9\n0.01,,0.08\n0.02,221.0,0.95\n0.03,222.0,0.2\n"


def test_empty_cell_keeps_the_confidence_in_its_column(tmp_path):
    path = _f0_csv(tmp_path / "a.csv", PYIN_LIKE)
    times, hz, conf = f0_module.read_f0_table(path)
    assert np.allclose(times, [0, 0.01, 0.02, 0.03])
    assert np.array_equal(hz, [220.0, 0.0, 221.0, 222.0])  # the empty F0 is unvoiced, not 0.08 Hz
    assert np.allclose(conf, [0.9, 0.08, 0.95, 0.2])        # the confidence column is kept for the whole file
    _, hz, _ = f0_module.read_f0_table(path, confidence_threshold=0.5)
    assert np.array_equal(hz, [220.0, 0.0, 221.0, 0.0])


def test_a_row_with_a_missing_field_is_refused(tmp_path):
    path = _f0_csv(tmp_path / "a.csv", "0.00,220.0,0.9\n0.01,0.08\n")
    with pytest.raises(ChoirbenchError) as err:
        f0_module.read_f0_table(path)
    assert str(err.value) == (f"{path}, line 2: 2 fields where line 1 has 3; every row needs one value per column "
                              f"(an empty cell for a missing value)")


def test_csd_converter_reads_pandas_written_pyin_nan(tmp_path):
    """A CSD-shaped release whose .f0 files pandas wrote from librosa.pyin output (NaN -> empty cell)."""
    root = tmp_path / "release"
    root.mkdir()
    sr, seconds = 44100, 1.2
    t = np.arange(int(sr * seconds)) / sr
    for name, hz in (("soprano", 523.25), ("alto", 392.0), ("tenor", 261.63), ("bass", 130.81)):
        sf.write(root / f"CSD_ER_{name}_1.wav", (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), sr)
        times = np.arange(0, seconds, 0.01)
        track = np.where((times > 0.3) & (times < 0.6), np.nan, hz)  # a rest, written as pYIN's NaN
        pd.DataFrame({"time": times, "f0": track, "voiced_prob": np.where(np.isnan(track), 0.05, 0.9)}).to_csv(
            root / f"CSD_ER_{name}_1.f0", index=False)
    assert ",,0.05" in (root / "CSD_ER_alto_1.f0").read_text()
    prepare("csd", {"root": str(root)}, tmp_path / "out")
    f0 = read_f0(tmp_path / "out" / "f0" / "El_Rossinyol" / "A1.csv")
    grid = np.arange(len(f0)) * HOP / SAMPLE_RATE
    assert np.all(f0[(grid > 0.32) & (grid < 0.58)] == 0)
    assert np.allclose(f0[(grid > 0.02) & (grid < 0.28)], 392.0)


# ----------------------------------------------------------------------------- one rule for unvoiced markers

UNVOICED_TABLE = "time_s,alto\n0.00,220\n0.01,0\n0.02,-130.8\n0.03,nan\n0.04,\n0.05,221\n"


def test_unvoiced_markers_read_the_same_everywhere(tmp_path, capsys):
    path = _f0_csv(tmp_path / "f0.csv", UNVOICED_TABLE)
    expected = [220, 0, 0, 0, 0, 221]
    assert np.array_equal(read_f0_table(path)[1][0], expected)                        # `separate`'s table
    assert np.array_equal(f0_module.read_f0_table(path)[1], expected)                 # the converters' reader
    assert np.array_equal(read_release_f0(path)[1], expected)
    prepared = tmp_path / "prepared.csv"
    write_f0(prepared, np.array([220.0, 0.0, 0.0, 221.0]))
    prepared.write_text(prepared.read_text().replace("0.016,0.0", "0.016,-1").replace("0.032,0.0", "0.032,"))
    assert np.array_equal(read_f0(prepared), [220, 0, 0, 221])                        # the prepared format
    mix = _chord(tmp_path / "mix.wav", 0.5)
    code, err = _separate(capsys, mix, path, "nmf2")
    assert code == 0, err
    assert read_wav(tmp_path / "out" / "alto.wav")[0].shape == (8000,)


def test_infinite_f0_is_refused(tmp_path):
    path = _f0_csv(tmp_path / "f0.csv", "time_s,alto\n0.00,220\n0.01,inf\n")
    with pytest.raises(ChoirbenchError) as err:
        read_f0_table(path)
    assert str(err.value) == f"{path}, line 3, column 'alto': inf is not an F0; write unvoiced frames as {UNVOICED}"


# ----------------------------------------------------------------------------- notes given to `separate`

def test_notes_of_an_unknown_voice_are_refused(tmp_path, capsys):
    mix = _chord(tmp_path / "mix.wav", 1.0)
    f0 = _f0_csv(tmp_path / "f0.csv", "time_s,alto,bass\n0.0,330,220\n0.5,330,220\n")
    (tmp_path / "notes.csv").write_text("voice,onset_s,offset_s,midi\nalto,0.0,0.5,64\ntenor,0.0,0.5,57\n")
    code, err = _separate(capsys, mix, f0, "nmf1", "--notes", str(tmp_path / "notes.csv"))
    assert code == 2
    assert err == (f"choirbench separate: error: {tmp_path / 'notes.csv'}, line 3, column 'voice': 'tenor' is not a "
                   f"voice of the F0 table (voices: alto, bass)")


def test_notes_file_checks(tmp_path):
    path = _f0_csv(tmp_path / "S.csv", "onset_s,offset_s,midi\n0.1,0.5,72\n0.6,0.4,71\n")
    with pytest.raises(ChoirbenchError) as err:
        read_notes(path)
    assert str(err.value) == f"{path}, line 3: a note must have 0 <= onset_s <= offset_s, found 0.6 .. 0.4 s"
    path = _f0_csv(tmp_path / "A.csv", "onset_s,offset_s,midi\n100,500,72\n600,900,71\n")
    with pytest.raises(ChoirbenchError, match=r"line 2, column 'onset_s': 100 s is after the end of song 'a' "
                                              r"\(1.000 s\); times must be in seconds \(these look like milliseconds"):
        read_notes(path, duration_s=1.0, audio="song 'a'")


# ----------------------------------------------------------------------------- `prepare` with kind: prepared

@pytest.fixture()
def user_prepared(tmp_path) -> Path:
    return make_tiny_dataset(tmp_path / "mine", songs={"a": "test"}, seconds=2.0, singers=1)


def _prepare_error(root: Path, tmp_path: Path) -> str:
    with pytest.raises(ChoirbenchError) as err:
        prepare("prepared", {"root": str(root)}, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.csv").exists()
    return str(err.value)


def test_prepared_dataset_that_is_right_is_accepted(user_prepared, tmp_path):
    prepare("prepared", {"root": str(user_prepared)}, tmp_path / "out")
    assert (tmp_path / "out" / "manifest.csv").is_file()


def test_prepared_f0_on_a_10ms_grid_is_refused(user_prepared, tmp_path):
    path = user_prepared / "f0" / "a" / "S1.csv"
    f0 = read_f0(path)
    pd.DataFrame({"time_s": np.round(np.arange(len(f0)) * 0.01, 6), "f0_hz": f0}).to_csv(path, index=False)
    assert _prepare_error(user_prepared, tmp_path) == (
        f"{path}, line 3, column 'time_s': time 0.01 s is off the 16-ms F0 grid (row 1 must be at 0.016 s = "
        f"1 x 256 / 16000 Hz); resample the F0 to that grid (choirbench.data_prep.f0.to_hop_grid does)")


def test_prepared_f0_longer_than_its_audio_is_refused(user_prepared, tmp_path):
    path = user_prepared / "f0" / "a" / "A1.csv"
    write_f0(path, np.concatenate([read_f0(path), np.zeros(50)]))
    assert _prepare_error(user_prepared, tmp_path) == (
        f"{path}: 175 F0 frames, but audio/a/A1.wav has 32000 samples, which needs 126 frames on the 16-ms grid "
        f"(one per 256 samples, from 0 s to the end of the audio)")


def test_prepared_manifest_duration_past_the_audio_is_refused(user_prepared, tmp_path):
    manifest = pd.read_csv(user_prepared / "manifest.csv", dtype=str)
    manifest.loc[manifest["part"] == "T", "duration_s"] = "2.5"
    manifest.to_csv(user_prepared / "manifest.csv", index=False)
    line = int(np.flatnonzero(manifest["part"] == "T")[0]) + 2
    assert _prepare_error(user_prepared, tmp_path) == (
        f"{user_prepared / 'manifest.csv'}, line {line}, column 'duration_s': 2.5 s, but audio/a/T1.wav lasts 2 s "
        f"(32000 samples); write the audio's length in seconds (samples / 16000)")


def test_prepared_44khz_stems_are_refused_at_prepare(user_prepared, tmp_path):
    path = user_prepared / "audio" / "a" / "B1.wav"
    sf.write(path, np.zeros(int(2.0 * 44100), np.float32), 44100)
    assert _prepare_error(user_prepared, tmp_path) == (
        f"{path}: 44100 Hz, 1 channel(s); the prepared format is mono 16000 Hz: resample it, or use `kind: stems`, "
        f"which reads any rate and channel count")


def test_prepared_manifest_paths_and_names_are_checked(user_prepared, tmp_path):
    manifest = pd.read_csv(user_prepared / "manifest.csv", dtype=str)
    manifest.loc[0, "audio"] = "elsewhere/S1.wav"
    manifest.to_csv(user_prepared / "manifest.csv", index=False)
    assert _prepare_error(user_prepared, tmp_path) == (
        f"{user_prepared / 'manifest.csv'}, line 2, column 'audio': 'elsewhere/S1.wav' must be 'audio/a/{manifest.loc[0, 'part']}1.wav' "
        f"(the loaders read that path)")
    manifest.loc[0, "song"] = "a b"
    manifest.to_csv(user_prepared / "manifest.csv", index=False)
    assert _prepare_error(user_prepared, tmp_path) == (
        f"{user_prepared / 'manifest.csv'}, line 2, column 'song': 'a b' is not a valid name (letters, digits, "
        f"'.', '-' and '_'; it names folders and files)")
