"""The method contract, run against every registered method (benchopt-style generic test)."""
import numpy as np
import pytest
import torch

from choirbench.data_prep.prepared import ExcerptSampler, load_example, make_examples
from choirbench.registry import available, get
from choirbench.registry import check_output
from choirbench.checkpoints import FORMAT


CASES = [(name, {}) for name in available()] + [("sf", {"supervised": True}), ("sf", {"output": "synthesis"})]
IDS = [name + "".join(f"-{k}={v}" for k, v in extra.items()) for name, extra in CASES]


@pytest.fixture(scope="module")
def satb_example(tiny_dataset):
    row = next(make_examples(tiny_dataset, 4, "test", seed=0, skip_first=False).itertuples())
    return load_example(tiny_dataset, row)


@pytest.fixture(scope="module")
def ready_method(tiny_dataset, tmp_path_factory):
    """Build each method once; trainable ones get a few training steps on the tiny dataset."""
    cache, checkpoints = {}, {}

    def make(name, extra):
        key = (name, tuple(sorted(extra.items())))
        if key not in cache:
            cls = get(name)
            params = {**cls.smoke_params, **extra}
            method = cls(params)
            if cls.trainable:
                valid = [load_example(tiny_dataset, r) for r in
                         make_examples(tiny_dataset, 4, "valid", seed=0, skip_first=False).itertuples()][:1]
                sampler = ExcerptSampler(tiny_dataset, "train", seed=0, with_voices=method.uses_isolated_voices)
                if not method.uses_isolated_voices:
                    valid = [v.__class__(**{**v.__dict__, "voices": None}) for v in valid]
                checkpoint = method.fit(sampler, valid, tmp_path_factory.mktemp(name), seed=0)
                method = cls(params)
                method.load(checkpoint)  # Method.load: the safe path (weights_only=True, checked header and entry)
                checkpoints[key] = checkpoint
            cache[key] = method
        return cache[key]

    make.checkpoints = checkpoints
    return make


TRAINABLE = [(name, extra) for name, extra in CASES if get(name).trainable]


@pytest.mark.parametrize("name, extra", TRAINABLE, ids=[i for i, c in zip(IDS, CASES) if c in TRAINABLE])
def test_a_trained_checkpoint_is_plain_data_and_records_its_entry(name, extra, ready_method):
    method = ready_method(name, extra)
    path = ready_method.checkpoints[(name, tuple(sorted(extra.items())))]
    state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code can be in it
    assert state["format"] == FORMAT and state["method"] == name and state["kind"] == "model"
    assert state["entry"]["params"] == method.params
    assert method.inference_params <= set(method.defaults), "inference_params must name knobs of `defaults`"


@pytest.mark.parametrize("name, extra", CASES, ids=IDS)
def test_separate_returns_finite_voices_of_the_mixture_length(name, extra, satb_example, ready_method):
    method = ready_method(name, extra)
    ex = satb_example
    extra = {"references": ex.voices} if method.needs_references else {}
    voices = check_output(method.separate(ex.mixture, ex.sr, ex.f0, ex.notes, **extra), ex.mixture, 4, name)
    assert voices.shape == (4, len(ex.mixture)) and voices.dtype == np.float32
    assert np.all(np.isfinite(voices)) and np.any(voices)


@pytest.mark.parametrize("name, extra", [c for c in CASES if c[1].get("output") != "synthesis"],
                         ids=[i for i, c in zip(IDS, CASES) if c[1].get("output") != "synthesis"])
def test_silence_in_silence_out(name, extra, satb_example, ready_method):
    """Silence in, silence out (the synthesis output of sf is exempt: it sings the given F0 regardless)."""
    method = ready_method(name, extra)
    ex = satb_example
    silent = np.zeros_like(ex.mixture)
    extra = {"references": np.zeros_like(ex.voices)} if method.needs_references else {}
    voices = method.separate(silent, ex.sr, ex.f0, ex.notes, **extra)
    assert voices.shape == (4, len(silent)) and np.all(np.isfinite(voices))
    assert np.max(np.abs(voices)) < 1e-6


@pytest.mark.parametrize("name, extra", CASES, ids=IDS)
def test_any_number_of_voices_and_odd_lengths(name, extra, satb_example, ready_method):
    method = ready_method(name, extra)
    ex = satb_example
    n = 3 * 16000 + 123
    mix, f0, refs = ex.voices[:2, :n].sum(0), ex.f0[:2, : n // 256], ex.voices[:2, :n]
    notes = [v for v in ex.notes[:2]] if ex.notes else None
    extra = {"references": refs} if method.needs_references else {}
    voices = method.separate(mix, ex.sr, f0, notes, **extra)
    assert voices.shape == (2, n) and np.all(np.isfinite(voices))
