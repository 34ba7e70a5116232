"""The shipped configs: the paper's DAG without data, Bach10 end to end, combined datasets."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from choirbench.data_prep.datasets import prepare
from conftest import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]


def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "wf"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work)
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copytree(ROOT / "config", work / "config")
    return work


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=work, capture_output=True, text=True)


def test_paper_dag_lists_every_method_seed_and_J_without_data(tmp_path):
    work = workdir(tmp_path)
    dry = snakemake(work, "-n", "all", "--configfile", "config/paper.yaml")
    assert dry.returncode == 0, dry.stderr[-2000:]
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    trained = [m for m, e in config["methods"].items() if e["model"] in ("sf", "unet") and not e.get("checkpoint_from")]
    for method in config["methods"]:
        for J in (2, 3, 4):
            seeds = range(5) if config["methods"][method]["model"] in ("sf", "unet") else [0]
            for seed in seeds:
                assert f"results/metrics/paper/{method}/seed{seed}/J{J}.parquet" in dry.stdout
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, flags=re.M))
    # sf-{us,sv}-{full,small}, unet-{full,small,ref}: one model per J (train_J: per_J, as the paper)
    assert int(stats["train"]) == len(trained) * 5 * 3 == 105
    for method in trained:
        for J in (2, 3, 4):
            assert f"results/models/paper/{method}/seed4/J{J}/model.pt" in dry.stdout
    real = snakemake(work, "--cores", "1", "all", "--configfile", "config/paper.yaml")
    assert real.returncode != 0
    assert "not found" in real.stderr and "zenodo" in real.stderr.lower()


def test_combined_dataset_links_songs_and_maps_splits(tmp_path):
    results = tmp_path / "results" / "data"
    make_tiny_dataset(results / "a", songs={"s1": "train", "s2": "test"}, seconds=5.0, singers=1)
    make_tiny_dataset(results / "b", songs={"t1": "test"}, seconds=5.0, singers=1, seed=1)
    prepare("combine", {"results": str(results), "sources": [
        {"dataset": "a", "splits": {"train": "train"}}, {"dataset": "b", "splits": {"test": "test"}}]},
        results / "ab")
    manifest = pd.read_csv(results / "ab" / "manifest.csv")
    assert sorted(manifest["song"].unique()) == ["a__s1", "b__t1"]
    assert set(manifest.loc[manifest.song == "b__t1", "split"]) == {"test"}
    assert (results / "ab" / "audio" / "a__s1" / "S1.wav").is_file()


def test_combined_dataset_never_trains_on_a_tested_piece(tmp_path):
    """Dagstuhl's Locus Iste takes are the piece of CSD's Locus Iste test excerpts."""
    from choirbench.data_prep.release import write_pieces

    results = tmp_path / "results" / "data"
    make_tiny_dataset(results / "dagstuhl", songs={"LI_QuartetA_Take04": "train", "TP_QuartetA_Take01": "train",
                                                   "LI_QuartetB_Take04": "valid"}, seconds=5.0, singers=1)
    write_pieces(results / "dagstuhl", {"LI_QuartetA_Take04": "locus_iste", "TP_QuartetA_Take01": "tebe_poem",
                                        "LI_QuartetB_Take04": "locus_iste"})
    make_tiny_dataset(results / "csd", songs={"Locus_Iste": "test"}, seconds=5.0, singers=1, seed=1)
    write_pieces(results / "csd", {"Locus_Iste": "locus_iste"})
    sources = [{"dataset": "dagstuhl", "splits": {"train": "train", "valid": "valid"}},
               {"dataset": "csd", "splits": {"test": "test"}}]
    prepare("combine", {"results": str(results), "sources": sources}, results / "paper")
    manifest = pd.read_csv(results / "paper" / "manifest.csv")
    assert sorted(manifest["song"].unique()) == ["csd__Locus_Iste", "dagstuhl__TP_QuartetA_Take01"]
    excluded = pd.read_csv(results / "paper" / "excluded.csv")
    assert excluded.to_dict("records") == [
        {"song": "dagstuhl__LI_QuartetA_Take04", "split": "train", "piece": "locus_iste"},
        {"song": "dagstuhl__LI_QuartetB_Take04", "split": "valid", "piece": "locus_iste"}]
    prepare("combine", {"results": str(results), "sources": sources, "allow_piece_overlap": True},
            results / "paper_overlap")
    assert pd.read_csv(results / "paper_overlap" / "manifest.csv")["song"].nunique() == 4


def test_bach10_config_runs_to_tables_and_figures(tmp_path, shared_data):
    work = workdir(tmp_path)
    config = yaml.safe_load((work / "config" / "bach10.yaml").read_text())
    config["datasets"]["bach10"].update(root=str(shared_data / "bach10"), songs=["08"], test_songs=["08"],
                                        valid_songs=[])
    config["J"] = [4]
    config["methods"] = {m: config["methods"][m] for m in ("mixture", "oracle", "nmf1")}
    config["examples"]["max_examples"] = {"valid": 2, "test": 3}
    config["report"] = False
    config["robustness"] = {"enabled": False}  # tested in tests/test_robustness.py
    (work / "config" / "bach10.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--cores", "2", "all", "--configfile", "config/bach10.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(work / "results" / "tables" / "bach10" / "J4.csv")
    assert set(table["method"]) == {"mixture", "oracle", "nmf1"}
    assert (work / "results" / "figures" / "bach10" / "boxplot_J4.png").is_file()


# ----------------------------------------------------------------------------- checks at workflow load

BASE = """
dataset: tiny
datasets:
  tiny: {kind: prepared, root: /nowhere}
methods:
  mixture: {model: mixture}
  nmf2: {model: nmf2}
  sf-a: {model: sf, params: {supervised: false}}
  sf-a-synth: {model: sf, checkpoint_from: sf-a, params: {output: synthesis}}
  unet-a: {model: unet}
"""


def loaded(extra: str = "", **replace) -> dict:
    """A config as the workflow sees it: YAML read as Snakemake reads it, schema defaults filled in."""
    from snakemake.utils import validate

    config = yaml.safe_load(BASE + extra)
    for key, value in replace.items():
        config[key] = value
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def refused(config: dict) -> str:
    from choirbench import ChoirbenchError
    from choirbench.config_check import check_config

    try:
        check_config(config)
    except ChoirbenchError as err:
        return str(err)
    raise AssertionError("accepted")


def with_params(entry: str, params: str) -> dict:
    config = loaded()
    config["methods"][entry]["params"] = {**config["methods"][entry].get("params", {}), **yaml.safe_load(params)}
    return config


NAME_RULE = ("is not a usable name (letters, digits, '_', '.', '-', starting with a letter or digit: "
             "it becomes part of file paths and shell commands)")


@pytest.mark.parametrize("entry, params, message", [
    ("sf-a", "{lr: 1e-3}", "config key methods.sf-a.params.lr must be a number, got '1e-3' (string) "
                          "(YAML reads 1e-3 as a string: write it with a dot and a signed exponent, e.g. 1.0e-3)"),
    ("sf-a", "{steps: 0}", "config key methods.sf-a.params.steps must be > 0, got 0"),
    ("sf-a", "{steps: -5}", "config key methods.sf-a.params.steps must be > 0, got -5"),
    ("sf-a", "{steps: 2.5}", "config key methods.sf-a.params.steps must be an integer, got 2.5 (number)"),
    ("sf-a", "{steps: true}", "config key methods.sf-a.params.steps must be an integer, got True (boolean)"),
    ("unet-a", "{valid_every: 0}", "config key methods.unet-a.params.valid_every must be > 0, got 0"),
    ("unet-a", "{channels: [4, '8']}", "config key methods.unet-a.params.channels[1] must be an integer, "
                                      "got '8' (string)"),
    ("unet-a", "{lr_decay: 1.5}", "config key methods.unet-a.params.lr_decay must be <= 1, got 1.5"),
    ("sf-a", "{output: synth}", "config key methods.sf-a.params.output must be one of 'masking', 'synthesis', "
                               "got 'synth'"),
    ("sf-a", "{supervised: 1}", "config key methods.sf-a.params.supervised must be true or false, got 1 (integer)"),
    ("nmf2", "{iterations: 0}", "config key methods.nmf2.params.iterations must be > 0, got 0"),
    ("nmf2", "{iteratons: 10}", "config key methods.nmf2.params.iteratons is unknown (known keys: beta, eps, "),
])
def test_method_params_are_typed_and_ranged_at_load(entry, params, message):
    assert refused(with_params(entry, params)).startswith(message)


@pytest.mark.parametrize("entry, params", [
    ("sf-a", "{mask_power: 2, lr: 1.0e-3, steps: 10}"),  # an integer where a number is expected
    ("nmf2", "{update_exponent: 1}"), ("nmf2", "{update_exponent: auto}"), ("nmf2", "{update_exponent: 0.5}"),
])
def test_well_typed_params_pass(entry, params):
    from choirbench.config_check import check_config

    check_config(with_params(entry, params))


def test_names_and_references_are_checked_at_load():
    config = loaded()
    config["methods"]["sf-a-synth"]["checkpoint_from"] = "sf-b"
    assert refused(config) == ("config key methods.sf-a-synth.checkpoint_from names 'sf-b', which has no entry "
                               "under 'methods' (known: mixture, nmf2, sf-a, sf-a-synth, unet-a)")
    config = loaded()
    config["methods"]["sf-a-synth"]["checkpoint_from"] = "unet-a"
    assert refused(config) == ("config key methods.sf-a-synth.checkpoint_from names 'unet-a', a unet entry, "
                               "but sf-a-synth is a sf")
    config = loaded()
    config["methods"]["nmf2"]["checkpoint_from"] = "sf-a"
    assert refused(config) == ("config key methods.nmf2.checkpoint_from: nmf2 is not trained, so it has no "
                               "checkpoint to reuse")
    assert refused(loaded(run=["nmf2", "nmf3"])) == ("config key run[1] names 'nmf3', which has no entry under "
                                                     "'methods' (known: mixture, nmf2, sf-a, sf-a-synth, unet-a)")
    assert refused(loaded(dataset="tiny2")) == ("config key dataset names 'tiny2', which has no entry under "
                                                "'datasets' (known: tiny)")
    config = loaded()
    config["methods"]["my entry"] = {"model": "mixture"}
    assert refused(config) == f"config key methods: 'my entry' {NAME_RULE}"
    config = loaded()
    config["datasets"]["../x"] = {"kind": "prepared"}
    assert refused(config) == f"config key datasets: '../x' {NAME_RULE}"
    config = loaded()
    config["examples"]["singer"] = "1; rm -rf ~"
    assert refused(config) == f"config key examples.singer: '1; rm -rf ~' {NAME_RULE}"
    config = loaded()
    config["examples"]["singer"] = {"song1": "2'"}
    assert refused(config) == f"config key examples.singer.song1: \"2'\" {NAME_RULE}"
    config = loaded()
    config["datasets"]["both"] = {"kind": "combine", "sources": [{"dataset": "tiny"}, {"dataset": "gone"}]}
    config["dataset"] = "both"
    assert refused(config) == ("config key datasets.both.sources[1].dataset names 'gone', which has no entry under "
                               "'datasets' (known: both, tiny)")
    config = loaded()
    config["datasets"]["tiny"]["rooot"] = "/x"
    assert refused(config) == "config key datasets.tiny.rooot is unknown (known keys: root)"


def test_snakemake_refuses_a_bad_knob_at_load_in_one_line(tmp_path):
    work = tmp_path / "wf"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work)
    shutil.copytree(ROOT / "workflow", work / "workflow")
    (work / "bad.yaml").write_text(BASE + "  sf-b: {model: sf, params: {valid_every: 0}}\n")
    dry = snakemake(work, "-n", "all", "--configfile", "bad.yaml")
    assert dry.returncode != 0
    assert dry.stderr.strip() == "choirbench: error: config key methods.sf-b.params.valid_every must be > 0, got 0"
    assert not (work / "results").exists()


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_shipped_config_passes_the_load_checks(name):
    from snakemake.utils import validate

    from choirbench.config_check import check_config

    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    check_config(config)


@pytest.mark.parametrize("params, message", [
    ("{iterations: 5}", "choirbench separate: error: --params is not valid JSON (Expecting property name enclosed "
                        "in double quotes: line 1 column 2 (char 1)): e.g. '{\"iterations\": 50}'"),
    ("[5]", "choirbench separate: error: --params must be a JSON object of the method's knobs, got [5]"),
    ('{"iterations": "5"}', "choirbench separate: error: config key methods.nmf2.params.iterations must be an "
                            "integer, got '5' (string)"),
])
def test_separate_refuses_bad_params_json_in_one_line(tmp_path, capsys, params, message):
    import numpy as np

    from choirbench.cli import main
    from choirbench.io import write_wav

    write_wav(tmp_path / "mix.wav", 0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000))
    times = np.arange(63) * 0.016
    pd.DataFrame({"time_s": times, "S": 440.0, "A": 220.0}).to_csv(tmp_path / "f0.csv", index=False)
    code = main(["separate", str(tmp_path / "mix.wav"), "--f0", str(tmp_path / "f0.csv"), "--method", "nmf2",
                 "--params", params, "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "out").exists()
