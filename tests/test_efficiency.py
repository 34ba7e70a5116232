"""The data-efficiency curve (finding 2) and the frugality table: which points reuse which model,
the curve's statistic, the table's sums, real-time factor and energy, and the workflow's plan."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from choirbench import ChoirbenchError
from choirbench.cli import main
from choirbench.data_prep.prepared import small_subset, write_manifest
from choirbench.evaluation import efficiency, frugality
from choirbench.evaluation.claims import bootstrap_median_ci
from conftest import make_tiny_dataset
from test_workflow import SMALL, small_workdir, snakemake

# ------------------------------------------------------------------------------------ which model a point is


def manifest_of(minutes: dict[str, float]) -> pd.DataFrame:
    """A manifest of training songs of the given lengths (two parts each; a song's length is its longest part)."""
    rows = []
    for song, length in minutes.items():
        for part, share in (("S", 1.0), ("A", 0.5)):
            rows.append({"song": song, "part": part, "singer": "1", "split": "train", "audio": f"{song}/{part}.wav",
                         "f0": f"{song}/{part}.csv", "duration_s": 60.0 * length * share})
    rows.append({"song": "v", "part": "S", "singer": "1", "split": "valid", "audio": "v.wav", "f0": "v.csv",
                 "duration_s": 600.0})
    return pd.DataFrame(rows)


MINUTES = {f"song{i:02d}": 1.0 + 0.1 * i for i in range(20)}  # 20 songs, 47 min


def point(fraction, candidates=(), base="sf-us-full"):
    return {"name": f"{base}_{fraction}", "base": base, "family": "sf-us", "fraction": fraction, "small_seed": 0,
            "candidates": list(candidates)}


def test_points_reuse_the_base_model_the_small_model_or_train():
    manifest = manifest_of(MINUTES)
    small = {"entry": "sf-us-small", "fraction": 0.03, "seed": 0}
    other_seed = {"entry": "sf-us-small-seed5", "fraction": 0.03, "seed": 5}
    one_song = small_subset(manifest, 0.03, 0)
    assert len(one_song) == 1 and small_subset(manifest, 0.03, 5) != one_song  # the premise of the cases below
    thirty = small_subset(manifest, 0.3, 0)
    # a larger share that still stops at the same songs: just under the audio those songs hold
    same = sum(MINUTES[s] for s in thirty) / sum(MINUTES.values()) - 1e-6
    assert same > 0.3
    plan = {p["name"]: p for p in efficiency.plan_points(
        manifest, [point(f, [other_seed, small]) for f in (0.0, 0.03, 0.3, same, 1.0)])}
    plan["sf-us-full_0.31"] = plan.pop(f"sf-us-full_{same}")
    # one song and 3 % are the same song as sf-us-small's (not the other seed's): its model
    assert plan["sf-us-full_0.0"]["model_of"] == plan["sf-us-full_0.03"]["model_of"] == "sf-us-small"
    assert plan["sf-us-full_0.03"]["songs"] == one_song and not plan["sf-us-full_0.03"]["new_training"]
    # 100 %: every song, the base entry's own model
    assert plan["sf-us-full_1.0"]["model_of"] == "sf-us-full" and plan["sf-us-full_1.0"]["n_songs"] == 20
    assert plan["sf-us-full_1.0"]["train_minutes"] == pytest.approx(sum(MINUTES.values()))
    # 30 %: a new training; the larger share picks the same songs, so it is that same new model
    assert plan["sf-us-full_0.3"]["new_training"] and plan["sf-us-full_0.3"]["model_of"] == "sf-us-full_0.3"
    assert plan["sf-us-full_0.3"]["songs"] == small_subset(manifest, 0.3, 0)
    assert plan["sf-us-full_0.31"]["songs"] == plan["sf-us-full_0.3"]["songs"]
    assert plan["sf-us-full_0.31"]["model_of"] == "sf-us-full_0.3" and not plan["sf-us-full_0.31"]["new_training"]
    chosen = plan["sf-us-full_0.3"]["songs"]
    assert plan["sf-us-full_0.3"]["train_minutes"] == pytest.approx(sum(MINUTES[s] for s in chosen), abs=1e-3)
    assert sum(MINUTES[s] for s in chosen) >= 0.3 * sum(MINUTES.values())


def test_without_a_matching_small_entry_the_small_shares_train():
    manifest = manifest_of(MINUTES)
    plan = efficiency.plan_points(manifest, [point(0.0), point(0.03), point(1.0)])
    # one song = 3 % here (the same song): one new model, used by both points
    assert [p["model_of"] for p in plan] == ["sf-us-full_0.0", "sf-us-full_0.0", "sf-us-full"]
    assert [p["new_training"] for p in plan] == [True, False, False]


# ------------------------------------------------------------------------------------------- the curve


def score_rows(method: str, seed: int, frame_values: dict[tuple[str, str], list[float]], J: int = 4) -> list[dict]:
    return [{"dataset": "d", "method": method, "seed": seed, "J": J, "example_id": ex, "voice": voice, "frame": i,
             "metric": metric, "value": v if metric == "SI-SDR" else -99.0}
            for (ex, voice), values in frame_values.items() for i, v in enumerate(values) for metric in ("SI-SDR", "SDR")]


def test_curve_median_and_interval_are_those_computed_by_hand(tmp_path):
    rng = np.random.default_rng(1)
    frames = {(f"e{k}", v): list(rng.normal(5 + k, 2, size=3)) for k in range(6) for v in "SATB"}
    rows = score_rows("sf-us-full", 0, frames)
    rows += score_rows("sf-us-full", 1, {key: [x + 1.0 for x in vals] for key, vals in frames.items()})  # seed 1: +1 dB
    rows += score_rows("sf-us-full", 0, {key: [x + 50 for x in vals] for key, vals in frames.items()}, J=2)  # other J
    small = {key: [x - 3.0 for x in vals] for key, vals in frames.items()}
    rows += score_rows("sf-us-small", 0, small) + score_rows("unet-full", 0, small) + score_rows("unet-small", 0, small)
    table = pd.DataFrame(rows)
    plan = [{"name": "sf-us-full_0.03", "base": "sf-us-full", "family": "sf-us", "fraction": 0.03, "n_songs": 1,
             "train_minutes": 1.0, "model_of": "sf-us-small", "new_training": False},
            {"name": "sf-us-full_1", "base": "sf-us-full", "family": "sf-us", "fraction": 1.0, "n_songs": 20,
             "train_minutes": 47.0, "model_of": "sf-us-full", "new_training": False},
            {"name": "unet-full_0.03", "base": "unet-full", "family": "unet", "fraction": 0.03, "n_songs": 1,
             "train_minutes": 1.0, "model_of": "unet-small", "new_training": False},
            {"name": "unet-full_1", "base": "unet-full", "family": "unet", "fraction": 1.0, "n_songs": 20,
             "train_minutes": 47.0, "model_of": "unet-full", "new_training": False}]
    curve = efficiency.curve_table(table, plan, J=4).set_index("point")
    # by hand: per (excerpt, voice) the median of its frames, then the mean of the two seeds (+0.5 dB)
    pairs = np.array([np.median(v) + 0.5 for v in frames.values()])
    row = curve.loc["sf-us-full_1"]
    assert row["median"] == pytest.approx(np.median(pairs)) and row["pairs"] == 24 and row["seeds"] == 2
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_median_ci(pairs))
    assert row["ci_low"] < row["median"] < row["ci_high"]
    small_pairs = np.array([np.median(v) for v in small.values()])
    assert curve.loc["sf-us-full_0.03", "median"] == pytest.approx(np.median(small_pairs))
    assert curve.loc["sf-us-full_0.03", "seeds"] == 1
    # the figure: one line per family, labelled
    figure = efficiency.curve_figure(curve.reset_index(), tmp_path / "curve.png", J=4)
    assert figure.stat().st_size > 5_000
    fig = efficiency.draw_curve(curve.reset_index(), J=4)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["sf-us (unsupervised)", "U-Net"]
    assert fig.axes[0].get_xscale() == "log"


def test_curve_names_a_point_without_scores():
    table = pd.DataFrame(score_rows("sf-us-full", 0, {("e1", "S"): [1.0, 2.0]}))
    plan = [{"name": "sf-us-full_0.3", "base": "sf-us-full", "family": "sf-us", "fraction": 0.3, "n_songs": 3,
             "train_minutes": 3.0, "model_of": "sf-us-full_0.3", "new_training": True}]
    with pytest.raises(ChoirbenchError, match="sf-us-full_0.3"):
        efficiency.curve_table(table, plan, J=4)


# ----------------------------------------------------------------------------------------- frugality

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path: Path, wall_s: float, rss_mb: float, cpu_s: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCH_HEADER + f"{wall_s}\t0:00:00\t{rss_mb}\t1\t1\t1\t0\t0\t50\t{cpu_s}\n")
    return str(path)


def test_frugality_sums_rtf_and_energy(tmp_path):
    data = tmp_path / "data"
    manifest = manifest_of({"a": 2.0, "b": 3.0, "c": 5.0})
    for rel in manifest["audio"]:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
    write_manifest(data, manifest)
    (tmp_path / "full.json").write_text(json.dumps({"id": "sf-full", "model": "sf", "data": "full"}))
    examples = tmp_path / "J4_test.csv"
    pd.DataFrame({"song": ["t"] * 5, "parts": ["SATB"] * 5, "singers": ["1111"] * 5,
                  "start_s": [0, 4, 8, 12, 16], "example_id": list("abcde")}).to_csv(examples, index=False)
    b = tmp_path / "bench"
    spec = {"excerpt_s": 4.0, "energy": {"watts_per_core": 10.0, "watts_per_gb": 0.5, "pue": 2.0}, "entries": {
        "sf-full": {"model": "sf", "trained_by": "sf-full", "config": str(tmp_path / "full.json"),
                    "trainings": [{"seed": s, "J": 4, "model": "unused.pt",
                                   "benchmark": bench(b / f"train{s}.tsv", 600.0 + 60 * s, 1024.0 * (1 + s), 1200.0)}
                                  for s in (0, 1)],
                    "separations": [{"seed": s, "J": 4, "examples": str(examples),
                                     "benchmark": bench(b / f"sep{s}.tsv", 10.0, 512.0, 8.0)} for s in (0, 1)]},
        "sf-full-synth": {"model": "sf", "trained_by": "sf-full", "config": str(tmp_path / "full.json"),
                          "trainings": [], "separations": [{"seed": 0, "J": 4, "examples": str(examples),
                                                            "benchmark": bench(b / "synth.tsv", 4.0, 256.0, 4.0)}]},
        "nmf2": {"model": "nmf2", "trained_by": "", "config": None, "trainings": [],
                 "separations": [{"seed": 0, "J": 4, "examples": str(examples),
                                  "benchmark": bench(b / "nmf.tsv", 40.0, 100.0, "NA")}]}}}
    table = frugality.frugality_table(spec, data, parameters={"sf-full": 1234}).set_index("entry")
    full = table.loc["sf-full"]
    assert full["parameters"] == 1234 and full["models_trained"] == 2
    assert full["train_audio_min"] == pytest.approx(10.0)  # every training song: 2 + 3 + 5 min
    assert full["train_wall_min"] == pytest.approx((600 + 660) / 60) and full["train_wall_min_per_model"] == pytest.approx(10.5)
    assert full["train_cpu_min"] == pytest.approx(40.0) and full["train_cpu_min_per_model"] == pytest.approx(20.0)
    assert full["train_peak_rss_mb"] == 2048.0
    # energy: (CPU-s x W/core + GB x wall-s x W/GB) x PUE, per job, in Wh
    by_hand = sum((1200 * 10.0 + gb * wall * 0.5) * 2.0 for gb, wall in ((1.0, 600), (2.0, 660))) / 3600
    assert full["train_energy_wh"] == pytest.approx(by_hand)
    # RTF: 2 jobs of 10 s over 2 x 5 excerpts of 4 s
    assert full["separate_rtf"] == pytest.approx(20.0 / 40.0) and full["separated_audio_min"] == pytest.approx(40 / 60)
    synth = table.loc["sf-full-synth"]
    assert synth["parameters"] == 1234 and math.isnan(synth["train_wall_min"])  # its training is sf-full's row
    assert synth["separate_rtf"] == pytest.approx(4.0 / 20.0)
    nmf = table.loc["nmf2"]
    assert nmf["parameters"] == 0 and nmf["train_energy_wh"] == 0
    # CPU time not measured: counted as the wall time on one core
    assert nmf["separate_energy_wh"] == pytest.approx((40 * 10.0 + 100 / 1024 * 40 * 0.5) * 2.0 / 3600)
    md = frugality.frugality_markdown(table.reset_index(), spec["energy"])
    assert "10 W per core" in md and "Green Algorithms" in md and "`sf-full-synth` uses the models of `sf-full`" in md


def test_frugality_of_a_test_only_dataset_with_untrained_methods(tmp_path):
    """Bach10-like: no training split, only untrained methods (the table must not ask for training songs)."""
    data = tmp_path / "data"
    manifest = manifest_of({"a": 2.0}).assign(split="test")
    for rel in manifest["audio"]:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
    write_manifest(data, manifest)
    examples = tmp_path / "J4_test.csv"
    pd.DataFrame({"song": ["a"], "parts": ["SATB"], "singers": ["1111"], "start_s": [0],
                  "example_id": ["a0"]}).to_csv(examples, index=False)
    spec = {"excerpt_s": 4.0, "entries": {"nmf1": {
        "model": "nmf1", "trained_by": "", "config": None, "trainings": [],
        "separations": [{"seed": 0, "J": 4, "examples": str(examples),
                         "benchmark": bench(tmp_path / "nmf.tsv", 2.0, 100.0, 1.5)}]}}}
    row = frugality.frugality_table(spec, data).set_index("entry").loc["nmf1"]
    assert row["train_audio_min"] == 0 and row["separate_rtf"] == pytest.approx(0.5)


def test_a_bad_benchmark_file_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("wall\tcpu\n1\t2\n")
    with pytest.raises(ChoirbenchError, match="bad.tsv"):
        frugality.read_benchmark(bad)
    assert main(["frugality", "--data", str(tmp_path), "--spec", "{not json", "--out", str(tmp_path)]) == 2
    assert "--spec" in capsys.readouterr().err


def test_parameters_are_counted_from_the_checkpoint(tiny_dataset, tmp_path):
    import torch

    from choirbench.checkpoints import read_checkpoint
    from test_checkpoints import UNET_PARAMS, entry_file, train_entry, valid_list

    torch.set_num_threads(1)
    entry = entry_file(tmp_path, "unet-tiny", "unet", UNET_PARAMS)
    model = train_entry(tiny_dataset, entry, tmp_path / "unet", valid_list(tiny_dataset, tmp_path))
    stored = read_checkpoint(model)["model"]
    tensors = {k: v for k, v in stored.items() if torch.is_tensor(v) and v.is_floating_point()
               and not re.search(r"running_|num_batches", k)}
    assert frugality.count_parameters(entry, model) == sum(v.numel() for v in tensors.values()) > 100


# ------------------------------------------------------------------------------------------- the workflow


def efficiency_config(dataset: str, root: Path, **block) -> str:
    """The test workflow's small config with two trained sf entries and a data_efficiency block."""
    config = yaml.safe_load(SMALL.format(dataset=dataset, root=root, iterations=5))
    sf = {"supervised": False, "steps": 2, "valid_every": 1, "checkpoint_every": 1, "max_valid_examples": 1}
    config["methods"].update({"sf-us-full": {"model": "sf", "data": "full", "train_J": 4, "params": sf},
                              "sf-us-small": {"model": "sf", "data": "small", "train_J": 4, "params": sf}})
    config["data_efficiency"] = {"enabled": True, "J": 4, "seeds": [0], "entries": ["sf-us-full"], **block}
    config["frugality"] = {"enabled": False}
    return yaml.safe_dump(config)


@pytest.fixture(scope="module")
def six_songs(tmp_path_factory) -> Path:
    songs = {f"t{i}": "train" for i in range(6)} | {"v": "valid", "x": "test"}
    return make_tiny_dataset(tmp_path_factory.mktemp("eff") / "data", songs=songs, seconds=5.0, singers=1)


def planned_models(listing: str) -> list[str]:
    """Every model.pt a dry run's listing says it will train (its jobs' missing outputs)."""
    return sorted(set(re.findall(r"Missing output files: (\S+/model\.pt)", listing)))


def test_dry_run_plans_exactly_the_new_trainings(tmp_path, six_songs):
    work = small_workdir(tmp_path / "wf")
    # 6 equal songs: 3 % and one song are sf-us-small's one song, 100 % is sf-us-full, 50 % and 60 % train
    (work / "a.yaml").write_text(efficiency_config("tiny", six_songs, fractions=[0, 0.03, 0.5, 0.6, 1.0]))
    done = snakemake(work, "--cores", "1", "results/efficiency/tiny/plan.json", "--configfile", "a.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    plan = {p["name"]: p for p in json.loads((work / "results/efficiency/tiny/plan.json").read_text())["points"]}
    assert [plan[n]["n_songs"] for n in ("sf-us-full_1song", "sf-us-full_frac0.03", "sf-us-full_frac0.5",
                                        "sf-us-full_frac0.6", "sf-us-full_frac1")] == [1, 1, 3, 4, 6]
    dry = snakemake(work, "-n", "data_efficiency", "--configfile", "a.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    # the new trainings, and the reused models as the main run's own jobs (not trained yet in this fresh folder)
    assert planned_models(dry.stdout + dry.stderr) == [
        "results/efficiency/tiny/models/sf-us-full_frac0.5/seed0/J4/model.pt",
        "results/efficiency/tiny/models/sf-us-full_frac0.6/seed0/J4/model.pt",
        "results/models/tiny/sf-us-full/seed0/J4/model.pt",
        "results/models/tiny/sf-us-small/seed0/J4/model.pt"]
    lint = snakemake(work, "--lint", "--configfile", "a.yaml")
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout[-3000:]


@pytest.mark.parametrize("curve_seeds, small_trains", [([0], False), ([0, 1], True)])
def test_a_small_entry_with_fewer_seeds_is_reused_only_for_the_seeds_it_trains(tmp_path, six_songs, curve_seeds,
                                                                               small_trains):
    """An entry's own `seeds` key: sf-us-small trains seed 0 only, so the curve's 1-song point reuses it
    for seeds [0] but trains its own model when the curve also needs seed 1."""
    work = small_workdir(tmp_path / "wf")
    config = yaml.safe_load(efficiency_config("tiny", six_songs, fractions=[0.03, 1.0], seeds=curve_seeds))
    config["methods"]["sf-us-small"]["seeds"] = [0]
    (work / "a.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(work, "--cores", "1", "results/efficiency/tiny/plan.json", "--configfile", "a.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    plan = {p["name"]: p for p in json.loads((work / "results/efficiency/tiny/plan.json").read_text())["points"]}
    assert plan["sf-us-full_frac0.03"]["model_of"] == ("sf-us-full_frac0.03" if small_trains else "sf-us-small")
    dry = snakemake(work, "-n", "data_efficiency", "--configfile", "a.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    own = [f"results/efficiency/tiny/models/sf-us-full_frac0.03/seed{s}/J4/model.pt" for s in curve_seeds]
    assert set(own) <= set(planned_models(dry.stdout + dry.stderr)) if small_trains else \
        not set(own) & set(planned_models(dry.stdout + dry.stderr))
    # sf-us-small itself never trains a seed it does not list
    assert "results/models/tiny/sf-us-small/seed1/J4/model.pt" not in planned_models(dry.stdout + dry.stderr)


def test_a_base_entry_that_is_not_full_is_one_line(tmp_path, six_songs):
    work = small_workdir(tmp_path / "wf")
    (work / "a.yaml").write_text(efficiency_config("tiny", six_songs, entries=["sf-us-small"]))
    done = snakemake(work, "-n", "all", "--configfile", "a.yaml")
    assert done.returncode != 0
    assert "data_efficiency.entries[0]: 'sf-us-small' must be a trained entry with data: full" in done.stderr


@pytest.mark.slow
def test_the_curve_and_the_frugality_table_end_to_end(tmp_path, six_songs):
    """The whole chain on tiny sf models: plan, one new training, reuse of the others, curve, figure, frugality."""
    work = small_workdir(tmp_path / "wf")
    config = yaml.safe_load(efficiency_config("tiny", six_songs, fractions=[0.03, 0.5, 1.0]))
    config["frugality"] = {"enabled": True}
    (work / "a.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(work, "--cores", "2", "data_efficiency", "frugality", "--configfile", "a.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    out = work / "results"
    curve = pd.read_csv(out / "tables/tiny/data_efficiency_curve.csv")
    assert list(curve["model_of"]) == ["sf-us-small", "sf-us-full_frac0.5", "sf-us-full"]
    assert list(curve["songs"]) == [1, 3, 6] and curve["median"].notna().all()
    assert (curve["ci_low"] <= curve["median"]).all() and (curve["median"] <= curve["ci_high"]).all()
    assert (out / "figures/tiny/data_efficiency.png").stat().st_size > 10_000
    assert sorted(p.name for p in (out / "efficiency/tiny/models").iterdir()) == ["sf-us-full_frac0.5"]
    table = pd.read_csv(out / "tables/tiny/frugality.csv").set_index("entry")
    assert table.loc["sf-us-full", "parameters"] == table.loc["sf-us-small", "parameters"] > 1000
    assert table.loc["sf-us-full", "train_audio_min"] == pytest.approx(6 * 5.0 / 60)
    assert table.loc["sf-us-small", "train_audio_min"] == pytest.approx(5.0 / 60)
    assert (table["separate_rtf"] > 0).all() and table.loc["nmf2", "parameters"] == 0
