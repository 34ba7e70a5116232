"""The harness around methods: method entries, training-set choice, separating an excerpt list."""
import json

import numpy as np
import pytest

from choirbench import ChoirbenchError
from choirbench.data_prep.prepared import write_examples
from choirbench.io import read_wav
from choirbench.harness import build, read_entry, separate_examples, training_songs


def write_entry(tmp_path, entry):
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(entry))
    return path


def test_entry_passes_method_params_to_the_method(tmp_path):
    entry = read_entry(write_entry(tmp_path, {"id": "o", "model": "oracle", "params": {"power": 1.0}}))
    assert build(entry).params["power"] == 1.0
    with pytest.raises(ChoirbenchError, match="methods.o.params.powr is unknown"):
        build(read_entry(write_entry(tmp_path, {"id": "o", "model": "oracle", "params": {"powr": 1.0}})))


def test_entry_rejects_unknown_keys_and_bad_data_choice(tmp_path, tiny_dataset):
    with pytest.raises(ChoirbenchError, match="methods.x.dtaa is unknown"):
        read_entry(write_entry(tmp_path, {"id": "x", "model": "mixture", "dtaa": "small"}))
    entry = read_entry(write_entry(tmp_path, {"id": "x", "model": "mixture", "data": "tiny"}))
    with pytest.raises(ChoirbenchError, match="must be 'full' or 'small'"):
        training_songs(tiny_dataset, entry)
    assert training_songs(tiny_dataset, dict(entry, data="full")) is None


def test_separate_examples_writes_every_voice(tmp_path, tiny_dataset):
    examples = write_examples(tiny_dataset, 2, "test", seed=0, skip_first=False, max_examples=2)
    entry = read_entry(write_entry(tmp_path, {"id": "oracle", "model": "oracle"}))
    separate_examples(tiny_dataset, examples, entry, None, tmp_path / "est")
    wavs = sorted((tmp_path / "est").rglob("*.wav"))
    assert len(wavs) == 2 * 2
    audio, _ = read_wav(wavs[0])
    assert len(audio) == 64000 and np.any(audio)
