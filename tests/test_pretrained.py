"""The shipped pretrained weights: converted without running pickled code, verified on load."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from choirbench import ChoirbenchError
from choirbench.data_prep.pretrained import (MODELS, WEIGHTS_DIR, convert, layers, load_weights,
                                             original_arrays, read_object_npy)

SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_weights_equal_the_shared_originals(name):
    if not SHARED_MODELS.is_dir():
        pytest.skip("../shared/models is not available")
    shipped, original = load_weights(name), original_arrays(SHARED_MODELS, name)
    assert shipped.keys() == original.keys()
    for key in shipped:
        assert shipped[key].dtype == np.float32
        np.testing.assert_array_equal(shipped[key], original[key], err_msg=key)


def test_layer_shapes_follow_the_published_stack():
    multif0 = load_weights("cuesta_multif0")
    magnitude = layers(multif0, "base_model1")
    assert [len(entry) for entry in magnitude] == [4, 2] * 6 + [4]       # BN, then (conv, BN) x 6
    assert magnitude[1][0].shape == (5, 5, 5, 16)                          # 5 harmonics in, 16 out
    assert magnitude[9][0].shape == (70, 3, 32, 32)
    assert layers(multif0, "cuesta")[4][0].shape == (360, 1, 64, 8)
    assert layers(load_weights("voas_cnn"), "voas_cnn_postprocess4_weights")[0][0].shape == (1, 1, 16, 1)


def test_conversion_is_byte_reproducible(tmp_path):
    if not SHARED_MODELS.is_dir():
        pytest.skip("../shared/models is not available")
    sums = convert(SHARED_MODELS, tmp_path)
    assert (tmp_path / "SHA256SUMS").read_bytes() == (WEIGHTS_DIR / "SHA256SUMS").read_bytes()
    assert set(sums) == {f"{name}.npz" for name in MODELS}


def test_an_altered_archive_is_refused(tmp_path):
    for file in WEIGHTS_DIR.iterdir():
        shutil.copyfile(file, tmp_path / file.name)
    data = bytearray((tmp_path / "voas_cnn.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "voas_cnn.npz").write_bytes(bytes(data))
    with pytest.raises(ChoirbenchError, match=r"voas_cnn\.npz: checksum does not match"):
        load_weights("voas_cnn", tmp_path)
    (tmp_path / "cuesta_multif0.npz").unlink()
    with pytest.raises(ChoirbenchError, match="shipped weights are missing"):
        load_weights("cuesta_multif0", tmp_path)


class _Marker:
    """Unpickling this creates a file: the attack a weight file could carry."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_weight_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    evil = np.empty(1, dtype=object)
    evil[0] = _Marker(marker)
    np.save(tmp_path / "evil.npy", evil, allow_pickle=True)
    with pytest.raises(ChoirbenchError, match=r"evil\.npy.*refusing to unpickle"):
        read_object_npy(tmp_path / "evil.npy")
    assert not marker.exists()
    (tmp_path / "text.npy").write_text("not a numpy file")
    with pytest.raises(ChoirbenchError, match=r"text\.npy: not a NumPy weight file"):
        read_object_npy(tmp_path / "text.npy")
