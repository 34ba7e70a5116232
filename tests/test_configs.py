"""The shipped configs: the paper's DAG without data, Bach10 end to end, combined datasets."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
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
    assert int(stats["train"]) == len(trained) * 5 == 35   # sf-{us,sv}-{full,small}, unet-{full,small,ref}
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


def test_bach10_config_runs_to_tables_and_figures(tmp_path, shared_data):
    work = workdir(tmp_path)
    config = yaml.safe_load((work / "config" / "bach10.yaml").read_text())
    config["datasets"]["bach10"].update(root=str(shared_data / "bach10"), songs=["08"], test_songs=["08"],
                                        valid_songs=[])
    config["J"] = [4]
    config["methods"] = {m: config["methods"][m] for m in ("mixture", "oracle", "nmf1")}
    config["examples"]["max_examples"] = {"valid": 2, "test": 3}
    config["report"] = False
    (work / "config" / "bach10.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--cores", "2", "all", "--configfile", "config/bach10.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(work / "results" / "tables" / "bach10" / "J4.csv")
    assert set(table["method"]) == {"mixture", "oracle", "nmf1"}
    assert (work / "results" / "figures" / "bach10" / "boxplot_J4.png").is_file()
