"""Dagstuhl ChoirSet against its per-file md5 index: the shipped index's layout, and small takes made here
with the release's file names (taken from the index), checked, corrupted and cut short."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from choirbench import PARTS, ChoirbenchError
from choirbench.data_prep import dagstuhl, file_index
from choirbench.data_prep.datasets import prepare
from choirbench.data_prep.file_index import CACHE_FILE, read_md5_index
from choirbench.data_prep.prepared import check_prepared
from test_datasets import PART_HZ, frame_f0, tone, write_table, write_wav
from test_validate import problem_lines, run

TAKE = "LI_QuartetB_Take04"
DEFAULT_TAKES = {"LI_FullChoir": 3, "LI_QuartetA": 6, "LI_QuartetB": 5, "TP_FullChoir": 4, "TP_QuartetA": 2}


@pytest.fixture(scope="module")
def index() -> dict[str, str]:
    return read_md5_index(dagstuhl.MD5_INDEX)


def make_take(base: Path, index: dict[str, str], take: str = TAKE, seconds: float = 1.0) -> list[str]:
    """Every file the index lists for ``take``, written small under ``base``; returns their paths."""
    sr = 22050
    made = []
    for rel in sorted(r for r in index if r.rsplit("/", 1)[-1].startswith(f"DCS_{take}_")):
        name = rel.rsplit("/", 1)[-1]
        singer = re.search(r"_([SATB])(\d)_[A-Z]+\.(wav|csv)$", name)
        part = singer.group(1) if singer else None
        hz = PART_HZ[part] * (1 + 0.01 * int(singer.group(2))) if part else 220.0
        audio, f0 = tone(hz, seconds, sr, seed=len(made))
        times, values = frame_f0(f0, sr, 256 / sr)
        path = base / rel
        if rel.endswith(".wav"):
            write_wav(path, audio, sr)
        elif rel.startswith("annotations_csv_F0_manual/"):
            write_table(path, times, values)
        elif rel.startswith(("annotations_csv_F0_CREPE/", "annotations_csv_F0_PYIN/")):
            write_table(path, times, np.where(values > 0, values, hz), np.full(len(times), 0.9))
        elif rel.startswith(dagstuhl.SCORE_DIR + "/"):
            part = name[-5]
            write_table(path, [0.1], [0.9], [{"S": 72.0, "A": 67.0, "T": 60.0, "B": 48.0}[part]])
        else:  # beat annotation: time, beat position
            write_table(path, [0.1, 0.6], [1.0, 2.0])
        made.append(rel)
    return made


def write_index(base: Path, rels: list[str], path: Path) -> dict[str, str]:
    sums = {rel: hashlib.md5((base / rel).read_bytes()).hexdigest() for rel in rels}
    path.write_text("# made by the test\n" + "".join(f"{md5}  {rel}\n" for rel, md5 in sorted(sums.items())))
    return sums


# ----------------------------------------------------------------------------- the shipped index

def test_shipped_index_is_the_whole_release(index):
    assert len(index) == 4135
    folders = {}
    for rel in index:
        folders[rel.split("/")[0]] = folders.get(rel.split("/")[0], 0) + 1
    assert folders == {"audio_wav_22050_mono": 1657, "annotations_csv_F0_CREPE": 1185, "annotations_csv_F0_PYIN": 1185,
                       "annotations_csv_F0_manual": 8, "annotations_csv_scorerepresentation": 80,
                       "annotations_csv_beat": 20}
    assert index["audio_wav_22050_mono/DCS_LI_Basses_Take01_B1_DYN.wav"] == "25ccbc4eb2d8cf1674f0d74244243abd"
    assert index["annotations_csv_beat/DCS_TP_QuartetA_Take02_Stereo_STM.csv"] == "b0c0a8e8056cbba7aad62aa2b3797596"


def test_converter_reads_the_release_layout(index):
    """The converter's choices made on the index's own file names: every default take has its four parts on a
    dynamic mic, the manual F0 exactly for the quartet Take04 singers, CREPE elsewhere, and a score per part."""
    params = dict(dagstuhl.DEFAULTS)
    files = set(index)
    takes = dagstuhl.takes_in(files)
    chosen = sorted(t for t in takes if t.split("_")[1] in params["settings"])
    counts = {}
    for take in chosen:
        counts[take.rsplit("_", 1)[0]] = counts.get(take.rsplit("_", 1)[0], 0) + 1
    assert counts == DEFAULT_TAKES
    manual = set()
    for take in chosen:
        stems, f0, scores, skipped = dagstuhl.plan_take(files, take, takes[take], params)
        assert sorted(p for p, _ in stems) == sorted(PARTS), take
        assert all(rel.endswith("_DYN.wav") for rel in stems.values()), take
        assert sorted(scores) == sorted(PARTS), take
        for (part, singer), (rel, kind) in f0.items():
            assert rel in index
            if kind == "manual":
                manual.add(f"{take}_{part}{singer}")
            else:
                assert kind == "crepe" and rel.endswith("_DYN.csv"), rel
        if "FullChoir" in take:  # one singer per part has a close-up mic besides the larynx mic
            assert sorted(f"{p}{s}" for p, s in stems) == ["A2", "B2", "S1", "T2"]
            assert sorted(f"{p}{s}" for p, s, larynx in skipped if larynx) == ["A1", "B1", "S2", "T1"]
    assert manual == {f"LI_QuartetA_Take04_{s}" for s in ("A1", "B1", "S2", "T1")} | \
        {f"LI_QuartetB_Take04_{s}" for s in ("A2", "B2", "S1", "T2")}


# ----------------------------------------------------------------------------- the converter

def test_converter_checks_every_file_it_reads(tmp_path, index):
    base = tmp_path / "DagstuhlChoirSet_V1.2.3"
    rels = make_take(base, index)
    mine = tmp_path / "mine.md5"
    sums = write_index(base, rels, mine)
    params = {"root": str(tmp_path), "songs": [TAKE], "md5_index": str(mine)}
    prepare("dagstuhl", params, tmp_path / "out")
    assert sorted(check_prepared(tmp_path / "out")["singer"].radd(
        check_prepared(tmp_path / "out")["part"])) == ["A2", "B2", "S1", "T2"]
    assert (base / CACHE_FILE).is_file()

    stem = "audio_wav_22050_mono/DCS_LI_QuartetB_Take04_T2_DYN.wav"
    data = bytearray((base / stem).read_bytes())
    data[-1] ^= 1
    (base / stem).write_bytes(data)
    actual = hashlib.md5(data).hexdigest()
    with pytest.raises(ChoirbenchError) as err:
        prepare("dagstuhl", params, tmp_path / "bad")
    message = str(err.value)
    assert "\n" not in message and f"{stem}: checksum, md5 {actual}, expected {sums[stem]}" in message
    assert not (tmp_path / "bad" / "manifest.csv").exists()
    data[-1] ^= 1
    (base / stem).write_bytes(data)

    # a missing dynamic-mic file would turn S1 into a larynx-only singer and drop the take: named instead
    (base / "audio_wav_22050_mono/DCS_LI_QuartetB_Take04_S1_DYN.wav").unlink()
    (base / "annotations_csv_F0_manual/DCS_LI_QuartetB_Take04_T2_LRX.csv").unlink()  # would fall back to CREPE
    with pytest.raises(ChoirbenchError) as err:
        prepare("dagstuhl", params, tmp_path / "bad")
    message = str(err.value)
    assert "2 file(s) differ" in message
    assert "audio_wav_22050_mono/DCS_LI_QuartetB_Take04_S1_DYN.wav: missing" in message
    assert "annotations_csv_F0_manual/DCS_LI_QuartetB_Take04_T2_LRX.csv: missing" in message
    prepare("dagstuhl", {**params, "verify": False, "require_all_parts": False}, tmp_path / "unverified")
    assert sorted(check_prepared(tmp_path / "unverified")["part"]) == ["A", "B", "T"]


def test_converter_refuses_files_not_in_the_release(tmp_path, index):
    base = tmp_path / "DagstuhlChoirSet_V1.2.3"
    write_index(base, make_take(base, index), tmp_path / "mine.md5")
    extra = "audio_wav_22050_mono/DCS_LI_QuartetB_Take04_A3_DYN.wav"  # a singer the release does not have
    write_wav(base / extra, tone(400.0, 1.0, 22050)[0], 22050)
    with pytest.raises(ChoirbenchError, match=re.escape(f"1 file(s) differ from Dagstuhl ChoirSet V1.2.3: {extra}: "
                                                        "unlisted, not a file of the release")):
        prepare("dagstuhl", {"root": str(tmp_path), "songs": [TAKE], "md5_index": str(tmp_path / "mine.md5")},
                tmp_path / "o")


def test_md5_is_cached_per_size_and_mtime(tmp_path, index, monkeypatch):
    base = tmp_path / "release"
    rels = make_take(base, index)
    sums = write_index(base, rels, tmp_path / "mine.md5")
    hashed = []
    real = file_index.file_digest
    monkeypatch.setattr(file_index, "file_digest", lambda path, algorithm: hashed.append(path) or real(path, algorithm))
    assert file_index.check_files(base, rels, sums, "mine.md5") == []
    assert len(hashed) == len(rels)
    hashed.clear()
    assert file_index.check_files(base, rels, sums, "mine.md5") == []
    assert hashed == []  # remembered in .choirbench_md5.tsv
    path = base / rels[0]
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))  # new content, new mtime
    problems = file_index.check_files(base, rels, sums, "mine.md5")
    assert hashed == [path] and [p[:2] for p in problems] == [(rels[0], "checksum")]


def test_malformed_index_named(tmp_path):
    bad = tmp_path / "bad.md5"
    bad.write_text("# header\nnot-a-sum  audio/x.wav\n")
    with pytest.raises(ChoirbenchError, match=r"bad.md5: line 2 is not '<md5>  <relative/path>'"):
        read_md5_index(bad)


# ----------------------------------------------------------------------------- validate

def test_validate_reports_against_the_index(tmp_path, index, capsys):
    base = tmp_path / "DagstuhlChoirSet_V1.2.3"
    rels = make_take(base, index)
    mine = tmp_path / "mine.md5"
    sums = write_index(base, rels, mine)
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  dcs: {{kind: dagstuhl, root: {tmp_path}, md5_index: {mine}}}\n")
    code, out = run(capsys, "--dataset", "dcs", "--configfile", config)
    assert code == 0, out
    assert f"{len(rels)} files checked against the md5 index mine.md5" in out
    stem = "audio_wav_22050_mono/DCS_LI_QuartetB_Take04_StereoReverb_STM.wav"  # a room mic: checked too
    data = bytearray((base / stem).read_bytes())
    data[100] ^= 1
    (base / stem).write_bytes(data)
    (base / "annotations_csv_beat/DCS_LI_QuartetB_Take04_Stereo_STM.csv").unlink()
    code, out = run(capsys, "--dataset", "dcs", "--configfile", config)
    lines = problem_lines(out)
    assert code == 1 and set(lines) == {stem, "annotations_csv_beat/DCS_LI_QuartetB_Take04_Stereo_STM.csv"}
    assert f"[checksum] md5 {hashlib.md5(data).hexdigest()}, expected {sums[stem]}" in lines[stem]
    assert "[missing]" in lines["annotations_csv_beat/DCS_LI_QuartetB_Take04_Stereo_STM.csv"]


def test_validate_shared_excerpt_is_not_the_release(shared_data, tmp_path, capsys, index):
    """The shared excerpts are cut from V1.2.3 (1 s each): every name is the release's, no md5 is."""
    source = shared_data / "dagstuhl_excerpts"
    if not source.is_dir():
        pytest.skip("dagstuhl_excerpts not available")
    root = tmp_path / "copy"  # validate remembers digests in the release folder: never write into ../shared
    shutil.copytree(source, root)
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  dcs: {{kind: dagstuhl, root: {root}, songs: [{TAKE}]}}\n")
    code, out = run(capsys, "--dataset", "dcs", "--configfile", config)
    lines = problem_lines(out)
    present = {p.relative_to(root / "dagstuhl_choirset").as_posix()
               for p in (root / "dagstuhl_choirset").rglob("*") if p.is_file() and p.name != CACHE_FILE}
    take_files = {rel for rel in index if rel.rsplit("/", 1)[-1].startswith(f"DCS_{TAKE}_")}
    assert code == 1 and present <= take_files
    assert {name for name, line in lines.items() if "[checksum]" in line} == present
    assert {name for name, line in lines.items() if "[missing]" in line} == take_files - present
    assert not any("[unlisted]" in line for line in lines.values())
