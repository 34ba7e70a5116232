"""CSD's per-part MIDI scores: read in seconds, checked against the part's annotated F0, then used, shifted or
refused. The release-shaped fixture (singers following a melody, .f0 annotations, MIDI files) is made here."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from choirbench import ChoirbenchError
from choirbench.data_prep.datasets import prepare
from choirbench.data_prep.f0 import midi_to_hz
from choirbench.data_prep.score_notes import check_alignment, read_lab_notes, read_midi_notes
from choirbench.data_prep.prepared import check_prepared
from choirbench.io import read_notes
from test_datasets import frame_f0, write_table, write_wav

SR = 44100
# a melody per part: (onset_s, offset_s, midi), with small gaps where the singers breathe
MELODY = {"soprano": [72, 74, 76, 77, 79, 76, 74, 72], "alto": [67, 65, 64, 65, 67, 69, 67, 64],
          "tenor": [60, 62, 64, 60, 59, 60, 62, 60], "bass": [48, 53, 52, 50, 43, 45, 47, 48]}
NOTE_S, START_S, SECONDS = 0.5, 0.5, 5.0


def melody_notes(voice: str, start: float = START_S) -> np.ndarray:
    pitches = MELODY[voice]
    onsets = start + NOTE_S * np.arange(len(pitches))
    return np.column_stack([onsets, onsets + NOTE_S - 0.05, pitches]).astype(float)


def sing(notes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A singer following ``notes`` with vibrato and a few cents of intonation error: (audio, F0 per sample)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * SR)) / SR
    f0 = np.zeros_like(t)
    for onset, offset, midi in notes:
        f0[(t >= onset) & (t < offset)] = midi_to_hz(midi + rng.normal(0, 0.1))
    f0 *= 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    audio = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.2 * audio * (f0 > 0)).astype(np.float32), f0


def write_midi(path: Path, notes: np.ndarray, *, transpose: int = 0) -> None:
    """A one-part MIDI file at 120 bpm (a quarter = 0.5 s) holding ``notes`` (onsets on the quarter grid)."""
    from music21 import note, stream, tempo

    part = stream.Stream()
    part.append(tempo.MetronomeMark(number=120))
    for onset, offset, midi in notes:
        part.insert(onset * 2, note.Note(int(midi) + transpose, quarterLength=(offset - onset) * 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    part.write("midi", fp=str(path))


@pytest.fixture()
def release(tmp_path) -> Path:
    """El Rossinyol with two singers per part and aligned per-part MIDI scores, laid out like the release."""
    root = tmp_path / "ChoralSingingDataset"
    for voice in MELODY:
        for n in (1, 2):
            audio, f0 = sing(melody_notes(voice), seed=n)
            write_wav(root / f"CSD_ER_{voice}_{n}.wav", audio, SR)
            write_table(root / f"CSD_ER_{voice}_{n}.f0", *frame_f0(f0, SR, 256 / SR))
        write_midi(root / f"CSD_ER_{voice}.mid", melody_notes(voice))
    return root


def test_read_midi_notes_follows_the_tempo_map(tmp_path):
    from music21 import note, stream, tempo

    part = stream.Stream()
    part.insert(0, tempo.MetronomeMark(number=120))
    part.insert(0, note.Note(60, quarterLength=1))      # 0.0-0.5 s
    part.insert(1, tempo.MetronomeMark(number=60))
    part.insert(1, note.Note(62, quarterLength=1))      # 0.5-1.5 s
    part.insert(3, note.Note(64, quarterLength=0.5))    # after a quarter rest: 2.5-3.0 s
    part.write("midi", fp=str(tmp_path / "t.mid"))
    assert read_midi_notes(tmp_path / "t.mid") == pytest.approx(np.array([[0, 0.5, 60], [0.5, 1.5, 62],
                                                                          [2.5, 3.0, 64]]), abs=1e-6)
    (tmp_path / "bad.mid").write_bytes(b"MThd not really")
    with pytest.raises(ChoirbenchError, match=r"bad.mid: not a readable MIDI file"):
        read_midi_notes(tmp_path / "bad.mid")


def test_aligned_scores_become_the_notes(release, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        prepare("csd", {"root": str(release)}, tmp_path / "out")
    check_prepared(tmp_path / "out")
    for voice, part in (("soprano", "S"), ("bass", "B")):
        notes = read_notes(tmp_path / "out" / "score" / "El_Rossinyol" / f"{part}.csv")
        assert notes == pytest.approx(melody_notes(voice), abs=1e-6)
    assert "CSD_ER_alto.mid: aligned with the F0 of El_Rossinyol part A" in caplog.text
    assert "shifted" not in caplog.text
    prepare("csd", {"root": str(release), "notes_sources": []}, tmp_path / "none")
    assert not (tmp_path / "none" / "score").exists()


def test_offset_score_is_shifted_or_refused(release, tmp_path, caplog):
    late = release / "CSD_ER_tenor.mid"
    write_midi(late, melody_notes("tenor", start=START_S + 0.5))  # the MIDI has an extra 0.5-s rest up front
    with caplog.at_level(logging.WARNING):
        prepare("csd", {"root": str(release)}, tmp_path / "out")
    assert re.search(r"CSD_ER_tenor.mid: shifted by -0\.[45]\d\d s to align with the F0 of El_Rossinyol part T", caplog.text)
    notes = read_notes(tmp_path / "out" / "score" / "El_Rossinyol" / "T.csv")
    assert notes[:, :2] == pytest.approx(melody_notes("tenor")[:, :2], abs=0.017)  # back on the singing, within a hop
    with pytest.raises(ChoirbenchError, match=r"CSD_ER_tenor.mid: the score is offset by -0\.[45]\d s from the sung F0 of "
                                              r"El_Rossinyol part T .*datasets.csd.score_misaligned: shift"):
        prepare("csd", {"root": str(release), "score_misaligned": "refuse"}, tmp_path / "refused")
    assert not (tmp_path / "refused" / "manifest.csv").exists()
    with pytest.raises(ChoirbenchError, match=r"datasets.csd.score_misaligned: 'maybe' is neither shift nor refuse"):
        prepare("csd", {"root": str(release), "score_misaligned": "maybe"}, tmp_path / "bad")


def test_wrong_pitch_score_is_refused(release, tmp_path):
    write_midi(release / "CSD_ER_alto.mid", melody_notes("alto"), transpose=5)  # a fourth too high
    with pytest.raises(ChoirbenchError) as err:
        prepare("csd", {"root": str(release)}, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{release / 'CSD_ER_alto.mid'}: the score does not match")
    assert re.search(r"median deviation -[45]\d\d cents\)", message) and "datasets.csd.notes_sources: [] to convert" in message
    write_midi(release / "CSD_ER_alto.mid", melody_notes("bass"))  # another part's score
    with pytest.raises(ChoirbenchError, match=r"CSD_ER_alto.mid: the score does not match the sung F0 of "
                                              r"El_Rossinyol part A: .*, a transposition\?"):
        prepare("csd", {"root": str(release)}, tmp_path / "out")


def write_lab(path: Path, notes: np.ndarray, cents: float = 0.0) -> None:
    """Notes as CSD's *_notes.lab: onset_s, mean F0 in Hz, duration_s (tab-separated)."""
    path.write_text("".join(f"{on:.4f}\t{midi_to_hz(m + cents / 100):.3f}\t{off - on:.4f}\n" for on, off, m in notes))


def test_note_annotations_are_preferred_and_checked(release, tmp_path, caplog):
    lab = release / "CSD_ER_soprano_notes.lab"
    write_lab(lab, melody_notes("soprano"), cents=12)  # measured pitch: 12 cents sharp of the score
    assert read_lab_notes(lab)[:, 2] == pytest.approx(melody_notes("soprano")[:, 2] + 0.12, abs=1e-3)
    with caplog.at_level(logging.INFO):
        prepare("csd", {"root": str(release)}, tmp_path / "out")
    assert "CSD_ER_soprano_notes.lab: aligned with the F0 of El_Rossinyol part S" in caplog.text
    notes = read_notes(tmp_path / "out" / "score" / "El_Rossinyol" / "S.csv")
    assert notes[:, 2] == pytest.approx(melody_notes("soprano")[:, 2] + 0.12, abs=1e-3)  # the lab, not the MIDI
    prepare("csd", {"root": str(release), "notes_sources": ["midi"]}, tmp_path / "midi")
    notes = read_notes(tmp_path / "midi" / "score" / "El_Rossinyol" / "S.csv")
    assert notes[:, 2] == pytest.approx(melody_notes("soprano")[:, 2])
    lab.write_text(lab.read_text() + "12.5\t0.0\t0.3\n")
    with pytest.raises(ChoirbenchError, match=r"CSD_ER_soprano_notes.lab: line 9: onset 12.5 s, 0 Hz, duration 0.3 s "
                                              r"is not a note"):
        prepare("csd", {"root": str(release)}, tmp_path / "bad")
    with pytest.raises(ChoirbenchError, match=r"datasets.csd.notes_sources: unknown \['musicxml'\]"):
        prepare("csd", {"root": str(release), "notes_sources": ["musicxml"]}, tmp_path / "bad")


def test_check_alignment_numbers():
    notes = melody_notes("soprano")
    hop = 256 / 16000
    frames = int(SECONDS / hop)
    t = np.arange(frames) * hop
    sung = np.zeros(frames)
    for onset, offset, midi in notes:
        sung[(t >= onset + 0.3) & (t < offset + 0.3)] = midi_to_hz(midi) * 2 ** (10 / 1200)  # late and 10 cents sharp
    fit = check_alignment(notes, [sung], max_offset_s=1.0)
    assert fit.offset_s == pytest.approx(0.3, abs=hop) and fit.agreement > 0.95
    assert fit.median_cents == pytest.approx(10, abs=0.5) and fit.agreement_at_zero < 0.5


def test_validate_checks_the_scores(release, tmp_path, capsys):
    from test_validate import problem_lines, run

    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  csd: {{root: {release}, songs: [ER]}}\n")
    code, out = run(capsys, "--dataset", "csd", "--configfile", config)
    assert code == 0 and "OK: 20 files" in out, out  # 8 stems, 8 F0 files, 4 scores
    write_midi(release / "CSD_ER_bass.mid", melody_notes("bass"), transpose=12)  # an octave too high
    (release / "CSD_ER_soprano.mid").write_bytes(b"not midi")
    code, out = run(capsys, "--dataset", "csd", "--configfile", config)
    lines = problem_lines(out)
    assert code == 1 and set(lines) == {"CSD_ER_bass.mid", "CSD_ER_soprano.mid"}
    assert "[notes] the score does not match the sung F0 of El_Rossinyol part B" in lines["CSD_ER_bass.mid"]
    assert "[notes] not a readable MIDI file" in lines["CSD_ER_soprano.mid"]


def test_a_choir_drifting_flat_still_matches_its_score():
    """A cappella singers drift: 0 to -80 cents over the piece. The tuning is taken out, a transposition is not."""
    notes = melody_notes("alto")
    hop = 256 / 16000
    t = np.arange(int(SECONDS / hop)) * hop
    sung = np.zeros(len(t))
    for onset, offset, midi in notes:
        sung[(t >= onset) & (t < offset)] = midi_to_hz(midi)
    drifting = sung * 2 ** (-80 * t / SECONDS / 1200)
    fit = check_alignment(notes, [drifting], max_offset_s=1.0)
    assert fit.offset_s == 0 and fit.agreement > 0.95 and -50 <= fit.tuning_cents < -20
    up = check_alignment(notes + [0, 0, 1], [drifting], max_offset_s=1.0)  # the score a semitone too high
    assert up.agreement < 0.5 and up.tuning_cents == -50
