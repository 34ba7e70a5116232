"""The prepared-data contract: excerpt lists, loading, small subsets, training batches."""
import numpy as np
import pandas as pd
import pytest

from choirbench import ChoirbenchError
from choirbench.data_prep.prepared import (ExcerptSampler, check_prepared, load_example, make_examples,
                                           read_manifest, small_subset, voice_combinations)


def test_voice_combinations_cover_all_choices():
    assert len(voice_combinations(2)) == 6 and len(voice_combinations(3)) == 4
    assert voice_combinations(4) == [("S", "A", "T", "B")]


@pytest.mark.parametrize("J", [2, 3, 4])
def test_excerpt_lists_are_deterministic_and_load_consistently(tiny_dataset, J):
    a = make_examples(tiny_dataset, J, "test", seed=3, skip_first=False)
    b = make_examples(tiny_dataset, J, "test", seed=3, skip_first=False)
    pd.testing.assert_frame_equal(a, b)
    assert a["example_id"].is_unique
    ex = load_example(tiny_dataset, next(a.itertuples()))
    assert ex.voices.shape == (J, 64000) and ex.f0.shape == (J, 250)
    np.testing.assert_allclose(ex.mixture, ex.voices.sum(0), atol=1e-6)
    assert np.max(np.abs(ex.mixture)) == pytest.approx(1.0)
    assert ex.notes is not None and len(ex.notes) == J


def test_skip_first_and_fixed_singer(tiny_dataset):
    first = make_examples(tiny_dataset, 4, "test", seed=0, skip_first=True, singer="2")
    assert (first["start_s"] >= 4.0).all() and (first["singers"] == "2-2-2-2").all()
    with pytest.raises(ChoirbenchError, match="no singer '7'"):
        make_examples(tiny_dataset, 4, "test", seed=0, singer="7")


def test_small_subset_takes_whole_songs(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    small = small_subset(manifest, 0.03, seed=0)
    assert len(small) == 1 and small[0] in set(manifest.loc[manifest["split"] == "train", "song"])
    assert small_subset(manifest, 0.03, seed=0) == small
    assert len(small_subset(manifest, 1.0, seed=0)) == 3


def test_sampler_is_seeded_resumable_and_hides_voices(tiny_dataset):
    s1 = ExcerptSampler(tiny_dataset, "train", seed=5)
    state = s1.get_state()
    m1, v1, f1 = s1.batch(2)
    s2 = ExcerptSampler(tiny_dataset, "train", seed=5, with_voices=False)
    s2.set_state(state)
    m2, v2, f2 = s2.batch(2)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(f1, f2)
    assert v2 is None and v1.shape == (2, 4, 64000)


def test_check_prepared_accepts_the_fixture(tiny_dataset):
    assert len(check_prepared(tiny_dataset)) == 5 * 4 * 2
