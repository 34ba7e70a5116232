"""Trained weights shipped with choirbench, stored so that loading them cannot run code.

The multi-F0 estimator of Cuesta, McFee & Gómez (ISMIR 2020, "Late/Deep") and the
voice-assignment CNN of Cuesta & Gómez (TISMIR 2022, VoAS-CNN) were released as
Keras models; their NumPy conversion (``../shared/models/``) is a set of pickled
object arrays, one entry per layer with weights, each a list of arrays in Keras
layout. Unpickling executes whatever the file says, so the weights are converted
*once* (:func:`convert`) into plain ``.npz`` archives of float32 arrays that
:func:`load_weights` reads with ``allow_pickle=False`` after checking their
SHA-256 against ``weights/SHA256SUMS``.

Archive keys: ``{layer file stem}/{layer index:02d}/{array index}``, e.g.
``base_model1/01/0`` is the kernel (kh, kw, in, out) of the first convolution of
the magnitude branch and ``base_model1/01/1`` its bias; batch-norm entries hold
``[gamma, beta, moving_mean, moving_variance]``.

Convert again (from the shared originals) with
``python -m choirbench.data_prep.pretrained ../shared/models``.
"""
from __future__ import annotations

import hashlib
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np

from choirbench import ChoirbenchError
from choirbench.io import atomic_path

WEIGHTS_DIR = Path(__file__).with_name("weights")
SUMS_FILE = "SHA256SUMS"

# archive name -> (folder under the shared models directory, layer files in network order)
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cuesta_multif0": ("cuesta_multif0", ("base_model1", "base_model2", "cuesta")),
    "voas_cnn": ("voas_f0_assigner", (
        "voas_cnn_f0_assigner", "voas_cnn_branch1", "voas_cnn_branch2", "voas_cnn_branch3", "voas_cnn_branch4",
        *(f"voas_cnn_postprocess{k}_{part}" for k in range(1, 5) for part in ("weights", "bias")))),
}
LICENCES = {"cuesta_multif0/LICENSE": "LICENSE-cuesta_multif0-MIT.txt",
            "voas_f0_assigner/LICENSE": "LICENSE-voas_cnn-MIT.txt",
            "LICENSE-conversion-Apache-2.0": "LICENSE-numpy-conversion-Apache-2.0.txt"}

# What a NumPy object array's pickle may name: array and dtype reconstruction, nothing else.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and lists of them; any other global is refused before it is touched."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only NumPy arrays are expected")
        return super().find_class(module, name)


def read_object_npy(path: Path) -> list:
    """The entries of a pickled object ``.npy`` (lists of arrays), read without running foreign code.

    Raises :class:`ChoirbenchError` naming the file when it is not such an array.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header(handle)
            if dtype.hasobject:
                array = _ArraysOnlyUnpickler(handle).load()
            else:
                handle.seek(0)
                array = np.lib.format.read_array(handle, allow_pickle=False)
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as err:
        raise ChoirbenchError(f"{path}: not a NumPy weight file ({err})") from None  # never the traceback
    array = np.asarray(array, dtype=object) if dtype.hasobject else array
    if array.shape != shape:
        raise ChoirbenchError(f"{path}: header says shape {shape}, found {array.shape}")
    return list(array)  # one entry per layer (a plain array's first axis counts its layers)


def _layer_arrays(entries: list) -> list[list[np.ndarray]]:
    out = []
    for entry in entries:
        arrays = entry if isinstance(entry, (list, tuple)) or (isinstance(entry, np.ndarray) and entry.dtype == object) \
            else [entry]
        out.append([np.asarray(a, dtype=np.float32) for a in arrays])
    return out


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def original_arrays(source: Path, name: str) -> dict[str, np.ndarray]:
    """The arrays of one model read from the shared originals, keyed as in the shipped archive."""
    folder, stems = MODELS[name]
    arrays = {}
    for stem in stems:
        for layer, entry in enumerate(_layer_arrays(read_object_npy(Path(source) / folder / f"{stem}.npy"))):
            for k, array in enumerate(entry):
                arrays[f"{stem}/{layer:02d}/{k}"] = array
    return arrays


def convert(source: Path, out_dir: Path = WEIGHTS_DIR) -> dict[str, str]:
    """Convert the shared pickled weights into ``out_dir/{name}.npz`` plus licences and ``SHA256SUMS``.

    Returns the written files' checksums by file name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        with atomic_path(out_dir / f"{name}.npz", suffix=".npz") as tmp:
            np.savez_compressed(tmp, **original_arrays(source, name))
    for src, dst in LICENCES.items():
        shutil.copyfile(Path(source) / src, out_dir / dst)
    sums = {f"{name}.npz": sha256(out_dir / f"{name}.npz") for name in MODELS}
    with atomic_path(out_dir / SUMS_FILE) as tmp:
        tmp.write_text("".join(f"{digest}  {file}\n" for file, digest in sorted(sums.items())))
    return sums


def expected_sums(weights_dir: Path = WEIGHTS_DIR) -> dict[str, str]:
    path = Path(weights_dir) / SUMS_FILE
    if not path.is_file():
        raise ChoirbenchError(f"{path}: checksum list of the shipped weights is missing (reinstall choirbench)")
    return {line.split()[1]: line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def load_weights(name: str, weights_dir: Path = WEIGHTS_DIR) -> dict[str, np.ndarray]:
    """The arrays of a shipped model (``cuesta_multif0`` or ``voas_cnn``), checksum verified.

    Raises :class:`ChoirbenchError` when the archive is missing, altered or unreadable.
    """
    if name not in MODELS:
        raise ChoirbenchError(f"unknown pretrained model {name!r} (known: {', '.join(MODELS)})")
    path = Path(weights_dir) / f"{name}.npz"
    if not path.is_file():
        raise ChoirbenchError(f"{path}: shipped weights are missing (reinstall choirbench)")
    expected = expected_sums(weights_dir).get(path.name)
    if expected is None or sha256(path) != expected:
        raise ChoirbenchError(f"{path}: checksum does not match {SUMS_FILE}: the file is corrupt or altered")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as err:
        raise ChoirbenchError(f"{path}: unreadable weight archive ({err})") from None


def layers(weights: dict[str, np.ndarray], stem: str) -> list[list[np.ndarray]]:
    """The layers of one Keras layer file, in network order: ``[[kernel, bias] | [gamma, beta, mean, var], ...]``."""
    found: dict[int, dict[int, np.ndarray]] = {}
    for key, array in weights.items():
        file, layer, k = key.split("/")
        if file == stem:
            found.setdefault(int(layer), {})[int(k)] = array
    if not found:
        raise ChoirbenchError(f"no layers named {stem!r} in the weights")
    return [[found[layer][k] for k in sorted(found[layer])] for layer in sorted(found)]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m choirbench.data_prep.pretrained SHARED_MODELS_DIR")
    for file, digest in convert(Path(sys.argv[1])).items():
        print(digest, file)
