"""``choirbench validate``: small releases made here, broken in known ways, and ../shared/data when present."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from choirbench import PARTS, ChoirbenchError
from choirbench.cli import main
from choirbench.data_prep import bach10
from choirbench.data_prep.download import write_sha256_list
from choirbench.data_prep.prepared import check_prepared
from conftest import make_tiny_dataset
from test_datasets import PART_HZ, frame_f0, tone, write_table, write_wav

CSD_NAMES = {"S": "soprano", "A": "alto", "T": "tenor", "B": "bass"}


def run(capsys, *argv) -> tuple[int, str]:
    """(exit code, stdout) of ``choirbench validate ARGV``."""
    try:
        code = main(["validate", *map(str, argv)])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def problem_lines(out: str) -> dict[str, str]:
    """file -> its problem line(s) of the report."""
    lines = {}
    for line in out.splitlines():
        if ": [" in line:
            name = line.split(": [", 1)[0]
            lines[name] = lines.get(name, "") + line
    return lines


def make_csd(root: Path, seconds: float = 2.0) -> Path:
    """A CSD release (flat CSD_<code>_<part>_<n>.wav + .f0 at 44.1 kHz), one singer per part."""
    sr = 44100
    for code in ("ER", "LI", "ND"):
        for part, name in CSD_NAMES.items():
            audio, f0 = tone(PART_HZ[part], seconds, sr)
            write_wav(root / f"CSD_{code}_{name}_1.wav", audio, sr)
            times, values = frame_f0(f0, sr, 256 / sr)
            write_table(root / f"CSD_{code}_{name}_1.f0", times, values)
    return root


def test_clean_csd_release_passes(tmp_path, capsys):
    root = make_csd(tmp_path / "csd")
    code, out = run(capsys, "--kind", "csd", "--root", root, "--out", tmp_path / "report.csv")
    assert code == 0, out
    assert "OK: 24 files" in out and "-> fix:" not in out and "problems:" not in out
    assert "44100 Hz, 1 ch, PCM_16: 12 file(s)" in out
    assert "no per-file checksum list for the CSD release" in out
    import pandas as pd
    table = pd.read_csv(tmp_path / "report.csv", keep_default_na=False)
    assert len(table) == 24 and set(table["problem"]) == {""}


def test_every_problem_of_a_broken_csd_copy_is_reported_in_one_run(tmp_path, capsys):
    root = make_csd(tmp_path / "csd", seconds=3.5)
    sr = 44100
    (root / "CSD_ER_alto_1.wav").unlink()                                       # a missing stem
    truncated = root / "CSD_LI_soprano_1.wav"                                   # cut short (interrupted copy)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / "CSD_LI_alto_1.wav").write_bytes(b"\x00garbage" * 100)                # not a WAV at all,
    write_table(root / "CSD_LI_alto_1.f0", [0.0, 0.01], [0.9, 0.8])            # and its F0 a confidence
    audio, f0 = tone(PART_HZ["B"], 1.2, sr)                                    # a stem 2.3 s shorter
    write_wav(root / "CSD_ND_bass_1.wav", audio, sr)
    write_table(root / "CSD_ND_bass_1.f0", *frame_f0(f0, sr, 256 / sr))
    audio, f0 = tone(PART_HZ["T"], 3.5, sr)                                    # F0 times in milliseconds
    times, values = frame_f0(f0, sr, 256 / sr)
    write_table(root / "CSD_ND_tenor_1.f0", times * 1000, values)
    code, out = run(capsys, "--kind", "csd", "--root", root, "--out", tmp_path / "report.csv")
    assert code == 1
    lines = problem_lines(out)
    assert "[missing]" in lines["CSD_ER_alto_1.wav"]
    assert "[truncated]" in lines["CSD_LI_soprano_1.wav"]
    assert "[unreadable]" in lines["CSD_LI_alto_1.wav"]
    assert "[length]" in lines["CSD_ND_bass_1.wav"] and "less than the longest stem of Nino_Dios" in lines[
        "CSD_ND_bass_1.wav"]
    assert "[f0]" in lines["CSD_ND_tenor_1.f0"] and "milliseconds" in lines["CSD_ND_tenor_1.f0"]
    assert "[f0]" in lines["CSD_LI_alto_1.f0"] and "outside the voiced F0 range" in lines["CSD_LI_alto_1.f0"]
    assert set(lines) == {"CSD_ER_alto_1.wav", "CSD_LI_soprano_1.wav", "CSD_LI_alto_1.wav", "CSD_ND_bass_1.wav",
                          "CSD_ND_tenor_1.f0", "CSD_LI_alto_1.f0"}
    assert "problems: f0 2, length 1, missing 1, truncated 1, unreadable 1" in out
    assert "OK: 17 files" in out  # 11 WAVs + their 11 F0 files + 1 missing WAV - 6 files with problems
    assert all("-> fix: " in line for line in lines.values())


def make_bach10(root: Path) -> Path:
    sr = 44100
    for song in ("01-Alpha", "02-Beta"):
        folder = root / song
        mix = 0
        for part, name in zip(PARTS, ("violin", "clarinet", "saxphone", "bassoon")):
            audio, _ = tone(PART_HZ[part], 1.0, sr)
            mix = mix + audio
            write_wav(folder / f"{song}-{name}.wav", audio, sr)
        write_wav(folder / f"{song}.wav", mix / 4, sr)
        midi = np.tile([[72.0], [67.0], [60.0], [48.0]], (1, 90))
        scipy.io.savemat(folder / f"{song}-GTF0s.mat", {"GTF0s": midi})
    return root


def test_bach10_wrong_checksum_and_missing_file(tmp_path, capsys, monkeypatch):
    root = make_bach10(tmp_path / "Bach10")
    sums = tmp_path / "bach10.sha256"
    write_sha256_list(sums, root, [str(p.relative_to(root)) for p in sorted(root.rglob("*.wav"))])
    monkeypatch.setattr(bach10, "CHECKSUMS", sums)
    code, out = run(capsys, "--kind", "bach10", "--root", root)
    assert code == 0 and "OK: 12 files" in out and "checked against the sha256 list" in out
    violin = root / "01-Alpha" / "01-Alpha-violin.wav"
    data = bytearray(violin.read_bytes())
    data[-10] ^= 0xFF  # still a readable WAV: only the checksum can tell
    violin.write_bytes(bytes(data))
    (root / "02-Beta" / "02-Beta-GTF0s.mat").unlink()
    code, out = run(capsys, "--kind", "bach10", "--root", root)
    assert code == 1
    lines = problem_lines(out)
    assert "[checksum]" in lines["01-Alpha/01-Alpha-violin.wav"]
    assert "[missing]" in lines["02-Beta/02-Beta-GTF0s.mat"]
    assert len(lines) == 2


def test_cantoria_missing_annotation_and_stem(tmp_path, capsys):
    base = tmp_path / "CantoriaDataset_v1.0.0"
    sr = 44100
    for code in ("EJB1", "THM"):
        for part in PARTS:
            audio, f0 = tone(PART_HZ[part], 1.0, sr)
            write_wav(base / "Audio" / f"Cantoria_{code}_{part}.wav", audio, sr)
            write_table(base / "F0_pyin" / f"Cantoria_{code}_{part}.csv", *frame_f0(f0, sr, 0.01))
    assert run(capsys, "--kind", "cantoria", "--root", tmp_path)[0] == 0
    (base / "F0_pyin" / "Cantoria_THM_A.csv").unlink()
    (base / "Audio" / "Cantoria_EJB1_B.wav").unlink()
    code, out = run(capsys, "--kind", "cantoria", "--root", tmp_path)
    lines = problem_lines(out)
    assert code == 1 and set(lines) == {"CantoriaDataset_v1.0.0/F0_pyin/Cantoria_THM_A.csv",
                                     "CantoriaDataset_v1.0.0/Audio/Cantoria_EJB1_B.wav"}
    assert all("[missing]" in line for line in lines.values())


def test_dagstuhl_unreadable_annotation_named(tmp_path, capsys):
    base = tmp_path / "DagstuhlChoirSet_V1.2.3"
    sr = 22050
    take = "DCS_LI_QuartetB_Take04"
    for part in PARTS:
        audio, f0 = tone(PART_HZ[part], 1.0, sr)
        write_wav(base / "audio_wav_22050_mono" / f"{take}_{part}1_DYN.wav", audio, sr)
        times, values = frame_f0(f0, sr, 256 / sr)
        write_table(base / "annotations_csv_F0_CREPE" / f"{take}_{part}1_DYN.csv", times,
                    np.where(values > 0, values, PART_HZ[part]), np.full(len(times), 0.9))
    code, out = run(capsys, "--kind", "dagstuhl", "--root", tmp_path)  # singers A1, B1, T1 are not the release's
    assert code == 1 and "[unlisted] not a file of the release" in problem_lines(out)[f"audio_wav_22050_mono/{take}_A1_DYN.wav"]
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  dcs: {{kind: dagstuhl, root: {tmp_path}, verify: false}}\n")
    code, out = run(capsys, "--dataset", "dcs", "--configfile", config)
    assert code == 0 and "not checked against the md5 index of V1.2.3 (verify: false)" in out
    bad = base / "annotations_csv_F0_CREPE" / f"{take}_A1_DYN.csv"
    write_table(bad, [0.0, 0.1], [0.9, 0.8], [0.9, 0.9])  # a confidence column where F0 belongs
    code, out = run(capsys, "--dataset", "dcs", "--configfile", config)
    assert code == 1 and "[f0]" in problem_lines(out)[str(bad.relative_to(base))]


def test_prepared_folder_every_problem_and_check_prepared_unchanged(tmp_path, capsys):
    root = make_tiny_dataset(tmp_path / "data", songs={"s1": "train", "s2": "test"}, seconds=2.0, singers=1)
    code, out = run(capsys, "--prepared", root)
    assert code == 0 and "OK: 17 files" in out
    (root / "audio" / "s1" / "A1.wav").unlink()
    f0 = np.full(200, 220.0)  # on a 10-ms grid: must be refused, not reinterpreted
    (root / "f0" / "s2" / "T1.csv").write_text("time_s,f0_hz\n" + "".join(f"{k * 0.01:.6f},{v}\n"
                                                                      for k, v in enumerate(f0)))
    code, out = run(capsys, "--prepared", root)
    lines = problem_lines(out)
    assert code == 1 and set(lines) == {"audio/s1/A1.wav", "f0/s2/T1.csv"}
    assert "[missing]" in lines["audio/s1/A1.wav"] and "off the 16-ms F0 grid" in lines["f0/s2/T1.csv"]
    with pytest.raises(ChoirbenchError, match="A1.wav: audio file listed in manifest not found"):
        check_prepared(root)  # still stops at the first problem, with the same message


def test_stems_kind_and_recorded_checksums(tmp_path, capsys):
    song = tmp_path / "mine" / "song1"
    for part, name in CSD_NAMES.items():
        audio, f0 = tone(PART_HZ[part], 1.0, 48000)
        write_wav(song / f"{name}.wav", audio, 48000)
    sums = tmp_path / "mine.sha256"
    code, out = run(capsys, "--kind", "stems", "--root", tmp_path / "mine", "--write-checksums", sums)
    assert code == 0 and "sha256 of 4 files written" in out and len(sums.read_text().splitlines()) == 4
    audio, _ = tone(PART_HZ["A"], 1.0, 48000, seed=5)
    write_wav(song / "alto.wav", audio, 48000)  # same length and format, other samples
    (song / "bass.csv").write_text("time_s,f0\n0,130\n500,131\n")  # milliseconds
    code, out = run(capsys, "--kind", "stems", "--root", tmp_path / "mine", "--checksums", sums)
    lines = problem_lines(out)
    assert code == 1 and "[checksum]" in lines["song1/alto.wav"] and "[f0]" in lines["song1/bass.csv"]
    code, out = run(capsys, "--kind", "stems", "--root", tmp_path / "mine", "--write-checksums", tmp_path / "new")
    assert code == 1 and "not written: this copy has problems" in out and not (tmp_path / "new").exists()


def test_bcbq_segment_without_a_voice(tmp_path, capsys):
    sr = 16000
    for k in (1, 2):
        for v, part in zip("satb", PARTS):
            audio, _ = tone(PART_HZ[part], 1.0, sr)
            write_wav(tmp_path / "BC" / "audio_16kHz" / f"1_BC001_part{k}_{v}_1ch.wav", audio, sr)
    code, out = run(capsys, "--kind", "bcbq", "--root", tmp_path)
    assert code == 0 and "OK: 8 files" in out and "BC/BQ is commercial" in out
    (tmp_path / "BC" / "audio_16kHz" / "1_BC001_part2_t_1ch.wav").unlink()
    code, out = run(capsys, "--kind", "bcbq", "--root", tmp_path)
    lines = problem_lines(out)
    assert code == 1 and list(lines) == ["BC/audio_16kHz/1_BC001_part2_t_1ch.wav"] and "[missing]" in out


def test_dataset_from_config_and_usage_errors(tmp_path, capsys):
    root = make_csd(tmp_path / "csd", seconds=1.0)
    config = tmp_path / "x.yaml"
    config.write_text(f"datasets:\n  mine: {{kind: csd, root: {root}}}\n  synth: {{kind: synth-chorales}}\n")
    code, out = run(capsys, "--dataset", "mine", "--configfile", config)
    assert code == 0 and "validate csd at" in out
    assert run(capsys, "--dataset", "nope", "--configfile", config)[0] == 2
    assert run(capsys, "--kind", "csd")[0] == 2  # --kind without --root
    code, out = run(capsys, "--kind", "synth-chorales", "--root", tmp_path)
    assert code == 2 and "--prepared results/data/NAME" in out
    assert run(capsys, "--kind", "csd", "--root", tmp_path / "absent")[0] == 2


def test_shared_data_is_clean(shared_data, tmp_path, capsys):
    checks = [("bach10", shared_data / "bach10", "OK: 70 files"),
              ("dagstuhl", shared_data / "dagstuhl_excerpts", "OK: "),  # 1-s excerpts: no md5 of V1.2.3 holds
              ("stems", shared_data / "csd_rossinyol_sections", "OK: 5 files")]
    for kind, root, ok in checks:
        if not root.is_dir():
            continue
        config = tmp_path / f"{kind}.yaml"
        config.write_text(f"datasets:\n  d: {{kind: {kind}, root: {root}{', verify: false' if kind == 'dagstuhl' else ''}}}\n")
        code, out = run(capsys, "--dataset", "d", "--configfile", config)
        assert code == 0, out
        assert ok in out


def test_shared_bach10_corrupt_copy(shared_data, tmp_path, capsys):
    source = shared_data / "bach10" / "01-AchGottundHerr"
    if not source.is_dir():
        pytest.skip("../shared/data/bach10 is not available")
    copy = tmp_path / "copy" / source.name
    shutil.copytree(source, copy)
    violin = copy / f"{source.name}-violin.wav"
    violin.chmod(0o644)
    data = bytearray(violin.read_bytes())
    data[-100] ^= 0xFF
    violin.write_bytes(bytes(data))
    config = tmp_path / "x.yaml"  # one piece of ten: the others are not asked for
    config.write_text(f"datasets:\n  bach10: {{root: {tmp_path / 'copy'}, songs: ['01']}}\n")
    code, out = run(capsys, "--dataset", "bach10", "--configfile", config)
    lines = problem_lines(out)
    assert code == 1 and list(lines) == [f"{source.name}/{violin.name}"] and "[checksum]" in lines[
        f"{source.name}/{violin.name}"]
