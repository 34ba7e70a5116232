"""Bad input: one clear message naming the file or key, non-zero exit, nothing half-written."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from choirbench import ChoirbenchError
from choirbench.cli import main
from choirbench.data_prep.prepared import check_prepared
from choirbench.io import read_wav, write_wav
from conftest import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]


def _mixture_and_f0(tmp_path, sr=16000, seconds=2.0):
    n = int(sr * seconds)
    t = np.arange(n) / sr
    mix = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 330 * t)
    sf.write(tmp_path / "mix.wav", mix.astype(np.float32), sr)
    times = np.arange(0, seconds, 0.01)
    pd.DataFrame({"time_s": times, "alto": 330.0, "bass": 220.0}).to_csv(tmp_path / "f0.csv", index=False)
    return tmp_path / "mix.wav", tmp_path / "f0.csv"


def _run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def test_missing_wav(tmp_path, capsys):
    code, err = _run(["separate", str(tmp_path / "nope.wav"), "--f0", "x.csv", "--method", "mixture",
                      "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "nope.wav: file not found" in err
    assert not (tmp_path / "out").exists()


def test_corrupt_wav(tmp_path, capsys):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    _, f0 = _mixture_and_f0(tmp_path)
    code, err = _run(["separate", str(tmp_path / "bad.wav"), "--f0", str(f0), "--method", "mixture",
                      "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "bad.wav: not a readable WAV file" in err
    assert not (tmp_path / "out").exists()


def test_wrong_channel_count_and_nan(tmp_path):
    sf.write(tmp_path / "stereo.wav", np.zeros((100, 2), np.float32), 16000)
    with pytest.raises(ChoirbenchError, match="stereo.wav: expected mono audio, found 2 channels"):
        read_wav(tmp_path / "stereo.wav")
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ChoirbenchError, match="nan.wav: contains NaN or Inf"):
        read_wav(tmp_path / "nan.wav")


def test_wrong_sample_rate_in_a_dataset(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", songs={"a": "test"}, seconds=2.0, singers=1)
    sf.write(root / "audio" / "a" / "S1.wav", np.zeros(22050, np.float32), 22050)
    with pytest.raises(ChoirbenchError, match=r"S1.wav: sample rate is 22050 Hz, expected 16000 Hz"):
        read_wav(root / "audio" / "a" / "S1.wav")


def test_mismatched_stem_lengths(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", songs={"a": "test"}, seconds=2.0, singers=1)
    write_wav(root / "audio" / "a" / "T1.wav", np.zeros(16000, np.float32))
    with pytest.raises(ChoirbenchError, match="song 'a' have mismatched lengths.*T1.wav=16000"):
        check_prepared(root)


def test_silent_mixture_gives_silent_output(tmp_path, capsys):
    _, f0 = _mixture_and_f0(tmp_path, seconds=1.0)
    sf.write(tmp_path / "mix.wav", np.zeros(16000, np.float32), 16000)
    assert main(["separate", str(tmp_path / "mix.wav"), "--f0", str(f0), "--method", "mixture",
                 "--out", str(tmp_path / "out")]) == 0
    assert not np.any(read_wav(tmp_path / "out" / "alto.wav")[0])


def test_unknown_method_id(tmp_path, capsys):
    mix, f0 = _mixture_and_f0(tmp_path)
    code, err = _run(["separate", str(mix), "--f0", str(f0), "--method", "nmf9", "--out", str(tmp_path / "o")],
                     capsys)
    assert code == 2 and "unknown method 'nmf9'" in err and "mixture" in err


def test_unknown_method_param(tmp_path, capsys):
    mix, f0 = _mixture_and_f0(tmp_path)
    code, err = _run(["separate", str(mix), "--f0", str(f0), "--method", "oracle", "--params",
                      json.dumps({"n_ftt": 512}), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "methods.oracle.params.n_ftt is unknown" in err


def test_separate_keeps_rate_and_length(tmp_path):
    mix, f0 = _mixture_and_f0(tmp_path, sr=44100, seconds=1.5)
    assert main(["separate", str(mix), "--f0", str(f0), "--method", "mixture", "--out", str(tmp_path / "o")]) == 0
    for voice in ("alto", "bass"):
        audio, rate = read_wav(tmp_path / "o" / f"{voice}.wav", sr=None)
        assert rate == 44100 and len(audio) == int(1.5 * 44100)
    assert not list((tmp_path / "o").glob(".*"))  # no temporary files left behind


def _snakemake_dry(tmp_path, config_text):
    work = tmp_path / "wf"
    work.mkdir()
    for item in ("Snakefile", "workflow"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, work / item)
    (work / "config").mkdir()
    (work / "config" / "config.yaml").write_text(config_text)
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "all"], cwd=work,
                          capture_output=True, text=True)


BASE = """dataset: d
datasets: {d: {kind: prepared, root: /nonexistent}}
methods: {mixture: {model: mixture}}
"""


@pytest.mark.parametrize("extra, message", [
    ("seedz: [1]\n", "seedz"),
    ("seeds: one\n", "seeds"),
    ("methods: {mixture: {model: mixture, dtaa: full}}\n", "dtaa"),
    ("methods: {m: {model: nmf9}}\n", "unknown method 'nmf9'"),
])
def test_config_typos_stop_the_workflow(tmp_path, extra, message):
    text = BASE if not extra.startswith("methods") else BASE.replace("methods: {mixture: {model: mixture}}\n", "")
    result = _snakemake_dry(tmp_path, text + extra)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
