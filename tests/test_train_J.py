"""One model per J (issue 14, item 1): the J-voice sampler, the per-J training identity, the
`train_J` knob in the schema and the workflow's checkpoint paths."""
import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from choirbench import ChoirbenchError
from choirbench.config_check import check_config
from choirbench.data_prep.prepared import ExcerptSampler, make_examples
from choirbench.evaluation.claims import convergence_table, rests_on
from choirbench.io import write_csv
from choirbench import harness

ROOT = Path(__file__).resolve().parents[1]
SF_PARAMS = {"device": "cpu", "encoder_hidden": 8, "encoder_layers": 1, "embedding": 8, "decoder_hidden": 8,
             "mlp_layers": 1, "n_harmonics": 10, "loss_fft_sizes": [256, 64], "excerpt_s": 1.0, "steps": 2,
             "batch_size": 2, "valid_every": 1, "checkpoint_every": 1, "max_valid_examples": 1}


# ----------------------------------------------------------------------------------------------- sampler

def drawn_parts(sampler: ExcerptSampler, n: int) -> list[tuple[str, ...]]:
    return [sampler.sample().parts for _ in range(n)]


def test_a_J2_sampler_draws_every_2_voice_combination_reproducibly(tiny_dataset):
    sampler = ExcerptSampler(tiny_dataset, "train", seed=7, excerpt_s=0.5, J=2)
    drawn = drawn_parts(sampler, 120)
    assert {len(p) for p in drawn} == {2}
    assert set(drawn) == set(itertools.combinations("SATB", 2))  # all C(4, 2) = 6 over many draws
    assert min(drawn.count(c) for c in set(drawn)) >= 8           # roughly uniform (expected 20 each)
    assert drawn_parts(ExcerptSampler(tiny_dataset, "train", seed=7, excerpt_s=0.5, J=2), 120) == drawn
    assert drawn_parts(ExcerptSampler(tiny_dataset, "train", seed=8, excerpt_s=0.5, J=2), 120) != drawn
    mixtures, voices, f0 = ExcerptSampler(tiny_dataset, "train", seed=7, excerpt_s=0.5, J=2).batch(3)
    assert voices.shape[:2] == (3, 2) and f0.shape[:2] == (3, 2)
    np.testing.assert_allclose(voices.sum(axis=1), mixtures, atol=1e-5)  # the mixture holds just those 2


def test_a_J3_sampler_covers_its_4_combinations_and_J4_mixes_every_part(tiny_dataset):
    assert set(drawn_parts(ExcerptSampler(tiny_dataset, "train", seed=1, excerpt_s=0.5, J=3), 60)) == set(
        itertools.combinations("SATB", 3))
    # J = 4 draws no combination: the same stream as the all-parts sampler used before train_J existed
    a = ExcerptSampler(tiny_dataset, "train", seed=3, excerpt_s=0.5, J=4).batch(2)
    b = ExcerptSampler(tiny_dataset, "train", seed=3, excerpt_s=0.5).batch(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[1].shape[1] == 4


@pytest.mark.parametrize("J", [0, 5])
def test_a_J_outside_the_parts_is_refused(tiny_dataset, J):
    with pytest.raises(ChoirbenchError, match=f"training J={J}"):
        ExcerptSampler(tiny_dataset, "train", seed=0, J=J)
    with pytest.raises(ChoirbenchError, match="training J=4"):
        ExcerptSampler(tiny_dataset, "train", ("S", "A"), seed=0, J=4)


# ------------------------------------------------------------------------------------- training identity

def valid_list(data: Path, folder: Path, J: int) -> Path:
    path = folder / f"J{J}_valid.csv"
    write_csv(path, make_examples(data, J, "valid", seed=0, skip_first=False, excerpt_s=1.0, max_examples=1))
    return path


def sf_entry(**keys) -> dict:
    from choirbench.params import resolve_params

    entry = resolve_params(harness.ENTRY_DEFAULTS, {"model": "sf", "excerpt_s": 1.0, **keys}, "methods.sf-tiny",
                           limits=harness.ENTRY_LIMITS)
    return {**entry, "params": dict(SF_PARAMS), "id": "sf-tiny"}


@pytest.fixture(scope="module")
def per_J_models(tiny_dataset, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("perJ")
    entry = sf_entry()
    models = {J: harness.train(tiny_dataset, entry, 0, root / f"J{J}", valid_list(tiny_dataset, root, J), J=J)
              for J in (2, 4)}
    yield {"root": root, "entry": entry, "models": models}
    torch.set_num_threads(before)


def test_the_training_identity_includes_the_J_trained_for(per_J_models):
    j2, j4 = (torch.load(per_J_models["models"][J], weights_only=True) for J in (2, 4))
    assert j2["training"]["entry"]["trained_J"] == 2 and j4["training"]["entry"]["trained_J"] == 4
    assert j2["training_sha256"] != j4["training_sha256"]
    assert j2["entry"]["trained_J"] == 2


def test_a_per_J_checkpoint_never_resumes_another_J(tiny_dataset, per_J_models, tmp_path, caplog):
    out = tmp_path / "run"
    shutil.copytree(per_J_models["models"][4].parent, out)
    with caplog.at_level("WARNING", logger="choirbench.training"):
        harness.train(tiny_dataset, per_J_models["entry"], 0, out, per_J_models["root"] / "J2_valid.csv", J=2)
    assert "trained_J 4 -> 2" in caplog.text
    assert (out / "model.stale.pt").read_bytes() == per_J_models["models"][4].read_bytes()
    # same J again: the finished model is reused as it is
    again = harness.train(tiny_dataset, per_J_models["entry"], 0, per_J_models["models"][2].parent,
                          per_J_models["root"] / "J2_valid.csv", J=2)
    assert again == per_J_models["models"][2]


def test_train_refuses_a_J_its_entry_does_not_train_and_a_valid_list_of_another_J(tiny_dataset, per_J_models,
                                                                                 tmp_path):
    with pytest.raises(ChoirbenchError, match=r"train_J is 4: its model is trained for J=4, not J=2"):
        harness.train(tiny_dataset, sf_entry(train_J=4), 0, tmp_path / "a", per_J_models["root"] / "J2_valid.csv",
                      J=2)
    with pytest.raises(ChoirbenchError, match=r"J4_valid.csv: holds 4-voice excerpts; the model is trained for J=2"):
        harness.train(tiny_dataset, sf_entry(), 0, tmp_path / "b", per_J_models["root"] / "J4_valid.csv", J=2)


@pytest.mark.parametrize("value", ["per_j", 5, 0, True, 2.0])
def test_a_bad_train_J_is_one_line_naming_the_key(value):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["methods"]["sf-us-full"]["train_J"] = value
    with pytest.raises(ChoirbenchError, match=r"methods\.sf-us-full\.train_J"):
        check_config(config)


def test_a_checkpoint_from_entry_cannot_ask_for_a_model_its_source_does_not_train():
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["methods"]["sf-us-small-synth"]["train_J"] = 2  # sf-us-small trains its J4 model only
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    with pytest.raises(ChoirbenchError, match=r"methods\.sf-us-small-synth\.train_J is 2, but 'sf-us-small' "
                                              r"trains only its J=4 model"):
        check_config(config)
    config["methods"]["sf-us-small-synth"]["train_J"] = 4
    check_config(config)


def test_trained_J_maps_each_test_J_to_its_model():
    assert [harness.trained_J({"train_J": "per_J"}, J) for J in (2, 3, 4)] == [2, 3, 4]
    assert [harness.trained_J({"train_J": 4}, J) for J in (2, 3, 4)] == [4, 4, 4]


def test_an_entry_has_one_source_of_defaults():
    """The schema types an entry's keys; their defaults live only in harness.ENTRY_DEFAULTS."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    entry = schema["properties"]["methods"]["additionalProperties"]["properties"]
    assert not [key for key, spec in entry.items() if "default" in spec]
    assert set(entry) <= set(harness.ENTRY_DEFAULTS)
    assert harness.ENTRY_DEFAULTS["train_J"] == "per_J"


# ------------------------------------------------------------------------------------ convergence notes

def test_convergence_notes_read_the_model_of_each_J(tmp_path):
    logs = []
    for entry, J, losses in (("sf-a", 2, [3.0, 2.0, 1.0]), ("sf-a", 4, [1.0, 1.0, 1.0]),
                             ("sf-b", 4, [3.0, 2.0, 1.0])):
        path = tmp_path / entry / "seed0" / f"J{J}" / "train_log.csv"
        path.parent.mkdir(parents=True)
        pd.DataFrame({"step": [100, 200, 300], "split": "valid", "loss": losses}).to_csv(path, index=False)
        logs.append(path)
    training = {"sf-a": {"trained_by": "sf-a", "steps": 300, "patience": 10},
                "sf-b": {"trained_by": "sf-b", "steps": 300, "patience": 10}}
    runs = convergence_table(logs, training)
    assert list(runs["J"]) == [2, 4, 4]
    limited2, note2 = rests_on(["sf-a"], training, runs, J=2)
    limited4, note4 = rests_on(["sf-a"], training, runs, J=4)
    assert limited2 and "sf-a (J2 model) not converged" in note2
    assert not limited4 and "sf-a (J4 model) converged" in note4
    # a shared model (only a J4 log) is what every J rests on
    assert rests_on(["sf-b"], training, runs, J=2) == rests_on(["sf-b"], training, runs, J=4)
    with pytest.raises(ChoirbenchError, match="expected"):
        convergence_table([tmp_path / "sf-a" / "J2" / "train_log.csv"], training)


# --------------------------------------------------------------------------------------------- workflow

def dry_run(tmp_path: Path, configfile: str) -> str:
    work = tmp_path / "wf"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work)
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copytree(ROOT / "config", work / "config")
    if (ROOT / "profiles").is_dir():
        shutil.copytree(ROOT / "profiles", work / "profiles")
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile", configfile], cwd=work,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_default_dry_run_trains_one_model_per_J_and_one_shared_model_for_train_J_4(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    out = dry_run(tmp_path, "config/config.yaml")
    models = set(re.findall(r"results/models/synth-chorales/([\w.-]+)/seed(\d+)/J(\d)/model\.pt", out))
    trained = {m: e for m, e in config["methods"].items()
               if e["model"] in ("sf", "unet") and not e.get("checkpoint_from")}
    per_J = [m for m, e in trained.items() if e.get("train_J", "per_J") == "per_J"]
    shared = [m for m, e in trained.items() if e.get("train_J", "per_J") == 4]
    assert per_J and shared and set(per_J) | set(shared) == set(trained)
    seeds = {m: e.get("seeds", config["seeds"]) for m, e in trained.items()}  # an entry's own seeds, else the run's
    assert any(len(v) < len(config["seeds"]) for v in seeds.values())
    expected = {(m, str(s), str(J)) for m in per_J for s in seeds[m] for J in config["J"]}
    expected |= {(m, str(s), "4") for m in shared for s in seeds[m]}
    assert models == expected
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(stats["train"]) == len(expected)
    # each model is validated on its own J; the J2 test set is separated with the model for J2
    reasons = re.findall(r"^Reason: Missing output files: (.*)$", out, flags=re.M)

    def job(output):
        found = [r for r in reasons if output in r.split(";")[0].split(", ")]
        assert len(found) == 1, output
        return found[0]

    def separate_job(method):
        return job(f"results/estimates/synth-chorales/{method}/seed0/J2")

    assert f"results/models/synth-chorales/{per_J[0]}/seed0/J2/model.pt" in separate_job(per_J[0])
    assert f"results/models/synth-chorales/{shared[0]}/seed0/J4/model.pt" in separate_job(shared[0])
    reuse = [m for m, e in config["methods"].items() if e.get("checkpoint_from") in per_J]
    for m in reuse:  # a per-J source lends the J2 model, or its 4-voice one to an entry with train_J: 4
        J = 4 if config["methods"][m].get("train_J") == 4 else 2
        assert f"results/models/synth-chorales/{config['methods'][m]['checkpoint_from']}/seed0/J{J}/model.pt" in \
            separate_job(m), m
    assert any(config["methods"][m].get("train_J") == 4 for m in reuse)  # per-J next to the shared model
    train = job(f"results/models/synth-chorales/{per_J[0]}/seed0/J3/model.pt")
    assert "examples/J3_valid.csv" in train and "J4_valid" not in train
