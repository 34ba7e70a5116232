"""Checkpoints: read without running code, checked against the entry, resumed only when nothing changed."""
from __future__ import annotations

import json
import logging
import pickle
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from choirbench import ChoirbenchError
from choirbench.cli import main
from choirbench.data_prep.prepared import make_examples
from choirbench.io import write_csv
from choirbench import harness
from choirbench.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from choirbench.methods.sf import SourceFilter
from choirbench.methods.unet import UNet
from conftest import Killed

ROOT = Path(__file__).resolve().parents[1]
UNET_PARAMS = {"device": "cpu", "channels": [4, 8], "cond_channels": [4, 4, 4], "steps": 4, "batch_size": 2,
               "valid_every": 2, "checkpoint_every": 2, "max_valid_examples": 1, "lr": 1e-2}
SF_PARAMS = {"device": "cpu", "encoder_hidden": 8, "encoder_layers": 1, "embedding": 8, "decoder_hidden": 8,
             "mlp_layers": 1, "n_harmonics": 10, "loss_fft_sizes": [256, 64], "excerpt_s": 1.0, "steps": 2,
             "batch_size": 2, "valid_every": 1, "checkpoint_every": 1, "max_valid_examples": 1}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread for every training here (also the module's fixture), as results depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def entry_file(folder: Path, name: str, model: str, params: dict, **keys) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"id": name, "model": model, "excerpt_s": 1.0, "params": params, **keys}))
    return path


def valid_list(data: Path, folder: Path, n: int = 1) -> Path:
    path = folder / f"valid{n}.csv"
    write_csv(path, make_examples(data, 4, "valid", seed=0, skip_first=False, excerpt_s=1.0, max_examples=n))
    return path


def train_entry(data, entry_path, out, valid, seed=0):
    return harness.train(data, harness.read_entry(entry_path), seed, out, valid)


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory, one_thread):
    """One tiny U-Net and one tiny sf trained through the harness (the workflow's path)."""
    root = tmp_path_factory.mktemp("trained")
    valid = valid_list(tiny_dataset, root)
    unet_entry = entry_file(root, "unet-tiny", "unet", UNET_PARAMS)
    sf_entry = entry_file(root, "sf-tiny", "sf", SF_PARAMS)
    return {"data": tiny_dataset, "root": root, "valid": valid, "unet_entry": unet_entry, "sf_entry": sf_entry,
            "unet": train_entry(tiny_dataset, unet_entry, root / "unet", valid),
            "sf": train_entry(tiny_dataset, sf_entry, root / "sf", valid)}


# ----------------------------------------------------------------------------- code in a file never runs

class MakesMarker:
    """Unpickling this calls open(marker, 'w'): a harmless stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path, trained):
    marker = tmp_path / "marker"
    evil_zip = tmp_path / "evil.pt"          # a torch archive whose pickle calls open()
    good = torch.load(trained["unet"], weights_only=True)
    torch.save({**good, "entry": {"id": "x", "params": MakesMarker(marker)}}, evil_zip)
    evil_pickle = tmp_path / "evil.pkl"      # a bare pickle (torch's legacy format)
    evil_pickle.write_bytes(pickle.dumps({"model": MakesMarker(marker)}))
    assert not marker.exists()
    for path in (evil_zip, evil_pickle):
        with pytest.raises(ChoirbenchError) as err:
            UNet(UNET_PARAMS).load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert "refused: unpickling it would call or build" in str(_error(UNet(UNET_PARAMS).load, evil_zip))
    # the training loop reads last.pt through the same door
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(evil_zip.read_bytes())
    with pytest.raises(ChoirbenchError, match=r"last\.pt: refused"):
        train_entry(trained["data"], trained["unet_entry"], out, trained["valid"])
    assert not marker.exists()


def _error(call, *args) -> ChoirbenchError:
    with pytest.raises(ChoirbenchError) as err:
        call(*args)
    return err.value


def test_the_package_never_unpickles_unsafely():
    hits = subprocess.run(["git", "grep", "-nE", r"weights_only *= *False|allow_pickle *= *True|pickle\.load",
                           "--", "choirbench"], cwd=ROOT, capture_output=True, text=True)
    assert hits.returncode == 1 and hits.stdout == "", hits.stdout


# ----------------------------------------------------------------------------- not a checkpoint

def _bad_files(tmp_path: Path, trained) -> dict[str, tuple[Path, str]]:
    real = trained["unet"].read_bytes()
    files = {
        "empty": (b"", "empty file"),
        "truncated": (real[: len(real) // 2], "not a checkpoint"),
        "text": (b"step,loss\n1,0.5\n", "not a checkpoint"),
        "list": (None, "not a choirbench checkpoint"),
    }
    out = {}
    for name, (content, message) in files.items():
        path = tmp_path / f"{name}.pt"
        if content is None:
            torch.save([torch.zeros(3)], path)
        else:
            path.write_bytes(content)
        out[name] = (path, message)
    out["wrong method"] = (trained["sf"], "a 'sf' checkpoint, not 'unet'")
    out["resume point"] = (trained["unet"].parent / "last.pt", "a resume point of an unfinished training")
    out["missing"] = (tmp_path / "nope.pt", "checkpoint not found")
    return out


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "list", "wrong method", "resume point", "missing"])
def test_a_bad_checkpoint_is_one_line_naming_the_file(case, tmp_path, trained):
    path, message = _bad_files(tmp_path, trained)[case]
    err = str(_error(UNet(UNET_PARAMS).load, path))
    assert err.startswith(f"{path}: ") and message in err and "\n" not in err, err


@pytest.mark.parametrize("case", ["truncated", "text", "wrong method"])
def test_separate_with_a_bad_checkpoint_exits_2_with_one_line(case, tmp_path, trained, capsys):
    path, message = _bad_files(tmp_path, trained)[case]
    mix, f0 = _recording(tmp_path)
    code = main(["separate", str(mix), "--f0", str(f0), "--method-config", str(trained["unet_entry"]),
                 "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(path) in err and message in err, err
    assert not (tmp_path / "out").exists()


def _recording(tmp_path: Path) -> tuple[Path, Path]:
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "mix.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    pd.DataFrame({"time_s": np.arange(0, 1, 0.01), "S": 440.0, "B": 220.0}).to_csv(tmp_path / "f0.csv", index=False)
    return tmp_path / "mix.wav", tmp_path / "f0.csv"


def test_separate_with_a_model_file_alone_uses_its_entry(tmp_path, trained, capsys):
    mix, f0 = _recording(tmp_path)
    assert main(["separate", str(mix), "--f0", str(f0), "--checkpoint", str(trained["sf"]),
                 "--params", '{"output": "synthesis"}', "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["B.wav", "S.wav"]
    code = main(["separate", str(mix), "--f0", str(f0), "--checkpoint", str(trained["sf"]),
                 "--params", '{"decoder_hidden": 16}', "--out", str(tmp_path / "out2"), "--threads", "1"])
    assert code == 2 and "decoder_hidden" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the entry a model was trained with

def test_a_training_key_changed_is_refused_with_the_key_named(trained):
    for change in ({"lr": 0.5}, {"decoder_hidden": 16}, {"supervised": True}):
        err = str(_error(SourceFilter({**SF_PARAMS, **change}).load, trained["sf"]))
        assert f"{next(iter(change))} (checkpoint" in err and str(trained["sf"]) in err, err
    err = str(_error(UNet({**UNET_PARAMS, "channels": [4, 16]}).load, trained["unet"]))
    assert "channels (checkpoint [4, 8], entry [4, 16])" in err


def test_inference_knobs_may_differ_from_training(trained, tiny_dataset):
    for change in ({"output": "synthesis"}, {"mask_power": 2}, {"mask_power": 2, "checkpoint_every": 7}):
        method = SourceFilter({**SF_PARAMS, **change})
        method.load(trained["sf"])
        assert method.model is not None
    # the workflow's entries: a `-synth` entry reusing the training of another loads, a changed entry does not
    entry = harness.read_entry(trained["sf_entry"])
    synth = dict(entry, id="sf-tiny-synth", checkpoint_from="sf-tiny", data="full",
                 params={**entry["params"], "output": "synthesis"})
    assert harness.load_method(synth, trained["sf"]).params["output"] == "synthesis"
    err = str(_error(harness.load_method, dict(entry, train_parts="SAT"), trained["sf"]))
    assert "trained with another entry: train_parts" in err


# ----------------------------------------------------------------------------- resumes that cannot go stale

def test_a_changed_entry_retrains_and_never_reuses_old_weights(tiny_dataset, tmp_path, trained, caplog):
    first = torch.load(trained["unet"], weights_only=True)
    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.pt", "last.pt", "train_log.csv"):
        (out / name).write_bytes((trained["unet"].parent / name).read_bytes())
    # the same entry again: the finished model is kept as it is
    same = train_entry(tiny_dataset, trained["unet_entry"], out, trained["valid"])
    assert same.read_bytes() == trained["unet"].read_bytes()
    # a training knob changed: the old model and resume point are moved aside and training starts afresh
    changed = entry_file(tmp_path, "unet-tiny", "unet", {**UNET_PARAMS, "lr": 3e-3})
    with caplog.at_level(logging.WARNING, logger="choirbench.training"):
        path = train_entry(tiny_dataset, changed, out, trained["valid"])
    assert re.search(r"model\.pt was trained under other settings \(params\.lr 0\.01 -> 0\.003\)", caplog.text)
    assert (out / "model.stale.pt").read_bytes() == trained["unet"].read_bytes()
    assert (out / "last.stale.pt").is_file()
    second = torch.load(path, weights_only=True)
    assert second["entry"]["params"]["lr"] == 3e-3 and second["training_sha256"] != first["training_sha256"]
    assert any(not torch.equal(v, second["model"][k]) for k, v in first["model"].items())
    # ... and ends exactly where a run with the new entry in an empty folder ends
    fresh = train_entry(tiny_dataset, changed, tmp_path / "fresh", trained["valid"])
    assert fresh.read_bytes() == path.read_bytes()
    # other training data (here the validation list) is a change too
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="choirbench.training"):
        train_entry(tiny_dataset, changed, out, valid_list(tiny_dataset, tmp_path, n=2))
    assert "data.valid_sha256 changed" in caplog.text


def test_a_stale_resume_point_is_not_resumed(tiny_dataset, tmp_path, trained, caplog):
    out = tmp_path / "run"
    changed = entry_file(tmp_path, "unet-tiny", "unet", {**UNET_PARAMS, "batch_size": 3})
    with pytest.raises(Killed):  # killed at step 3 under the first entry: last.pt holds step 2
        _train_killed_at(tiny_dataset, trained["unet_entry"], out, trained["valid"], kill_at=3)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    with caplog.at_level(logging.WARNING, logger="choirbench.training"):
        path = train_entry(tiny_dataset, changed, out, trained["valid"])
    assert "last.pt was trained under other settings (params.batch_size 2 -> 3)" in caplog.text
    fresh = train_entry(tiny_dataset, changed, tmp_path / "fresh", trained["valid"])
    assert path.read_bytes() == fresh.read_bytes()


def _train_killed_at(data, entry_path, out, valid, kill_at):
    from choirbench.data_prep import prepared

    original = prepared.ExcerptSampler.batch
    calls = []

    def batch(self, size):
        calls.append(size)
        if len(calls) == kill_at:
            raise Killed
        return original(self, size)

    prepared.ExcerptSampler.batch = batch
    try:
        return harness.train(data, harness.read_entry(entry_path), 0, out, valid)
    finally:
        prepared.ExcerptSampler.batch = original


def test_resumed_training_keeps_its_full_log(tiny_dataset, tmp_path, trained, caplog):
    out = tmp_path / "run"
    with pytest.raises(Killed):
        _train_killed_at(tiny_dataset, trained["unet_entry"], out, trained["valid"], kill_at=4)
    # Snakemake deletes a failed job's outputs, train_log.csv among them; last.pt (not an output) survives
    (out / "train_log.csv").unlink()
    with caplog.at_level(logging.INFO, logger="choirbench.training"):
        path = train_entry(tiny_dataset, trained["unet_entry"], out, trained["valid"])
    assert "last.pt at step 2" in caplog.text
    assert path.read_bytes() == trained["unet"].read_bytes()          # resumed exactly
    resumed = pd.read_csv(out / "train_log.csv")
    straight = pd.read_csv(trained["unet"].parent / "train_log.csv")
    columns = ["step", "split", "loss", "lr"]                           # elapsed_s is wall time
    assert resumed[columns].equals(straight[columns]) and resumed["step"].iloc[0] == 1


# ----------------------------------------------------------------------------- bytes

def test_two_saves_of_the_same_state_are_byte_identical(tmp_path, trained):
    state = read_checkpoint(trained["unet"].parent / "last.pt")
    save_checkpoint(tmp_path / "a.pt", state)
    save_checkpoint(tmp_path / "sub" / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "b.pt").read_bytes()
    # no temporary file name inside the archive
    assert {n.split("/")[0] for n in zipfile.ZipFile(tmp_path / "a.pt").namelist()} == {"archive"}
    # and two trainings of the same entry write the same model.pt
    again = train_entry(trained["data"], trained["unet_entry"], tmp_path / "again", trained["valid"])
    assert again.read_bytes() == trained["unet"].read_bytes()


def test_only_tensors_and_plain_values_are_stored(tmp_path):
    with pytest.raises(TypeError, match="numpy.ndarray"):
        save_checkpoint(tmp_path / "x.pt", {"kind": "model", "method": "unet", "entry": {}, "model": np.zeros(3)})
    assert not (tmp_path / "x.pt").exists()


# ----------------------------------------------------------------------------- the format before this one

def test_an_old_checkpoint_says_how_to_convert_and_converts_safely(tmp_path, trained, capsys):
    current = torch.load(trained["unet"], weights_only=True)
    old = tmp_path / "old.pt"  # what choirbench wrote before checkpoints recorded their entry
    arch = {k: current["entry"]["params"][k] for k in ("n_fft", "hop", "channels", "f0_bins", "f0_fmin",
                                                      "f0_cents_per_bin", "f0_sigma", "cond_channels",
                                                      "cond_kernel", "dropout", "leaky_slope")}
    torch.save({"model": current["model"], "step": 4, "best_valid": 0.5, "unet": arch}, old)
    err = str(_error(UNet(UNET_PARAMS).load, old))
    assert "choirbench convert-checkpoint" in err and "\n" not in err
    new = tmp_path / "new.pt"
    assert main(["convert-checkpoint", str(old), str(new), "--method-config", str(trained["unet_entry"])]) == 0
    method = UNet(UNET_PARAMS)
    method.load(new)
    assert all(torch.equal(v, method.model.state_dict()[k]) for k, v in current["model"].items())
    # the converter checks the entry against what the old file records
    wrong = entry_file(tmp_path, "w", "unet", {**UNET_PARAMS, "channels": [4, 16]})
    assert main(["convert-checkpoint", str(old), str(tmp_path / "n2.pt"), "--method-config", str(wrong)]) == 2
    assert "channels" in capsys.readouterr().err and not (tmp_path / "n2.pt").exists()


def test_an_old_resume_point_is_moved_aside_not_resumed(tmp_path, trained, caplog):
    out = tmp_path / "run"
    out.mkdir()
    resume = read_checkpoint(trained["unet"].parent / "last.pt")
    old = {k: resume[k] for k in ("model", "optimizer", "scheduler", "step", "best", "best_state", "bad_validations",
                                  "elapsed_s", "torch_rng", "cuda_rng", "sampler")}
    torch.save(old, out / "last.pt")   # the layout of last.pt before checkpoints had a header
    with caplog.at_level(logging.WARNING, logger="choirbench.training"):
        path = train_entry(trained["data"], trained["unet_entry"], out, trained["valid"])
    assert "written by an older choirbench" in caplog.text and (out / "last.stale.pt").is_file()
    assert path.read_bytes() == trained["unet"].read_bytes()
    err = str(_error(harness.convert_checkpoint, out / "last.stale.pt", tmp_path / "x.pt",
                     harness.read_entry(trained["unet_entry"])))
    assert "an old resume point" in err and not (tmp_path / "x.pt").exists()


def test_load_checkpoint_api(trained):
    state = load_checkpoint(trained["unet"], method="unet")
    assert state["method"] == "unet" and state["kind"] == "model" and state["entry"]["id"] == "unet-tiny"
    assert state["entry"]["params"]["channels"] == [4, 8] and len(state["training_sha256"]) == 64


@pytest.mark.parametrize("config", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_checkpoint_from_entry_loads_its_source_model(config):
    """An entry reusing another's training may change only inference knobs (else load_method would refuse it)."""
    import yaml

    methods = yaml.safe_load(config.read_text()).get("methods") or {}
    pairs = [(name, entry["checkpoint_from"]) for name, entry in methods.items() if entry.get("checkpoint_from")]
    for name, source in pairs:
        user, trainer = (harness.build({"id": n, "params": {}, **methods[n]}) for n in (name, source))
        assert user.name == trainer.name and user.training_params() == trainer.training_params(), (name, source)
