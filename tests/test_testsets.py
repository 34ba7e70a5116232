"""Trained models on other test sets (config `test_sets`, workflow/rules/testsets.smk): the gaps table
on hand-made metric tables, the workflow's DAG (dry run), and a tiny real run with a nasal test set."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from choirbench import ChoirbenchError
from choirbench.evaluation.evaluate import TABLE_COLUMNS
from choirbench.evaluation.test_sets import gap_table, write_gaps

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- gaps table

def metric_table(dataset: str, method: str, seed: int, value: float, J: int = 4) -> pd.DataFrame:
    """Every frame of 3 excerpts x 4 voices scores ``value`` (SI-SDR) and ``value + 1`` (SDR)."""
    rows = [[dataset, method, seed, J, f"song_SATB_{4000 * k:07d}ms", voice, frame, metric,
             value + (metric == "SDR") + 0.1 * frame]
            for k in range(1, 4) for voice in "SATB" for frame in range(3) for metric in ("SDR", "SI-SDR")]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


@pytest.fixture
def metric_files(tmp_path):
    # medians (frame 1 of 0..2 adds 0.1): main sf 6.1 (seeds 6 and 8 -> 7.1), nmf2 3.1, unet 5.1;
    # nasal sf 2.1, nmf2 4.1, unet 5.1 (sf's lead flips sign on the second test set)
    spec = [("main", "sf", 0, 6.0), ("main", "sf", 1, 8.0), ("main", "nmf2", 0, 3.0), ("main", "unet", 0, 5.0),
            ("nasal", "sf", 0, 2.0), ("nasal", "sf", 1, 2.0), ("nasal", "nmf2", 0, 4.0), ("nasal", "unet", 0, 5.0)]
    paths = []
    for dataset, method, seed, value in spec:
        path = tmp_path / dataset / method / f"seed{seed}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        metric_table(dataset, method, seed, value).to_parquet(path)
        paths.append(path)
    return paths


def test_gaps_are_seed_mean_medians_per_test_set(metric_files):
    table = pd.concat([pd.read_parquet(p) for p in metric_files])
    gaps = gap_table(table, ["sf"], ["nmf2", "unet"]).set_index(["test_set", "baseline", "metric"])
    assert gaps.loc[("main", "nmf2", "SI-SDR"), "gap_db"] == pytest.approx(7.1 - 3.1)
    assert gaps.loc[("main", "unet", "SDR"), "gap_db"] == pytest.approx(8.1 - 6.1)
    assert gaps.loc[("nasal", "nmf2", "SI-SDR"), "gap_db"] == pytest.approx(2.1 - 4.1)
    assert gaps.loc[("nasal", "unet", "SI-SDR"), "sf_median"] == pytest.approx(2.1)
    assert set(gaps["n_excerpts"]) == {3}
    assert list(dict.fromkeys(gaps.index.get_level_values("test_set"))) == ["main", "nasal"]


def test_write_gaps_markdown_and_csv(metric_files, tmp_path):
    md, = [p for p in write_gaps(metric_files, ["sf"], ["nmf2", "unet"], tmp_path / "out" / "test_sets", "main")
           if p.suffix == ".md"]
    text = md.read_text()
    assert "| sf entry | baseline | SI-SDR main | SDR main | SI-SDR nasal | SDR nasal |" in text
    assert "| sf | nmf2 | +4.00 | +4.00 | -2.00 | -2.00 |" in text
    assert "| sf | unet | +2.00 | +2.00 | -3.00 | -3.00 |" in text
    assert len(pd.read_csv(tmp_path / "out" / "test_sets.csv")) == 2 * 2 * 2


def test_a_method_missing_on_a_test_set_shows_a_dash(metric_files, tmp_path):
    kept = [p for p in metric_files if not (p.parent.parent.name == "nasal" and p.parent.name == "unet")]
    write_gaps(kept, ["sf"], ["unet"], tmp_path / "g", "main")
    assert "| sf | unet | +2.00 | +2.00 | – | – |" in (tmp_path / "g.md").read_text()


def test_bad_gap_inputs_are_one_clear_error(metric_files, tmp_path):
    with pytest.raises(ChoirbenchError, match="no SI-SDR/SDR score at J = 2"):
        gap_table(pd.read_parquet(metric_files[0]), ["sf"], ["nmf2"], J=2)
    with pytest.raises(ChoirbenchError, match="at least one sf entry"):
        write_gaps(metric_files, [], ["nmf2"], tmp_path / "g", "main")
    with pytest.raises(ChoirbenchError, match="not found"):
        write_gaps([tmp_path / "nope.parquet"], ["sf"], ["nmf2"], tmp_path / "g", "main")
    assert not (tmp_path / "g.md").exists()


# ------------------------------------------------------------------------------------ the workflow

CONFIG = """dataset: tiny
datasets:
  tiny: {{kind: prepared, root: {root}}}
  other: {{kind: prepared, root: {other}}}
J: [2, 4]
seeds: [0, 1]
examples: {{skip_first: false, max_examples: {{valid: 1, test: 2}}}}
methods:
  mixture: {{model: mixture}}
  oracle: {{model: oracle}}
  nmf2: {{model: nmf2, params: {{iterations: 5}}}}
  sf-us: {{model: sf, params: {{supervised: false, steps: 2, valid_every: 1, checkpoint_every: 1}}}}
  sf-us-synth: {{model: sf, checkpoint_from: sf-us, params: {{supervised: false, output: synthesis}}}}
robustness: {{enabled: false}}
test_sets: {test_sets}
report: false
"""


def dry_run(work: Path, test_sets: str, *args: str) -> subprocess.CompletedProcess:
    if not work.exists():
        work.mkdir(parents=True)
        shutil.copy(ROOT / "Snakefile", work / "Snakefile")
        shutil.copytree(ROOT / "workflow", work / "workflow")
        (work / "config").mkdir()
    (work / "config" / "config.yaml").write_text(
        CONFIG.format(root=work / "data" / "tiny", other=work / "data" / "other", test_sets=test_sets))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "2", *args, "all"], cwd=work,
                          capture_output=True, text=True)


def test_dry_run_asks_for_the_test_set_with_the_main_checkpoints_and_writes_nothing(tmp_path):
    work = tmp_path / "wf"
    run = dry_run(work, "[{dataset: other, J: [4], max_examples: 1}]")
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    # the trained entries separate the other dataset with the checkpoints trained on the main one
    for seed in (0, 1):
        assert (f"choirbench separate-set --data results/data/other --examples results/testsets/other/J4_test.csv "
                f"--method-config results/config/tiny/methods/sf-us-synth.json "
                f"--checkpoint results/models/tiny/sf-us/seed{seed}/J4/model.pt") in out
        assert f"--out results/metrics/other/from_tiny/sf-us/seed{seed}/J4.parquet" in out
    assert "--out results/estimates/other/from_tiny/nmf2/seed0/J4 " in out      # untrained: just run, once
    assert "results/estimates/other/from_tiny/nmf2/seed1" not in out
    assert "results/models/other" not in out                                   # nothing is trained on it
    assert "results/metrics/other/from_tiny/nmf2/seed0/J2.parquet" not in out  # J: [4] only
    assert "--max-examples 1 --out results/testsets/other/J4_test.csv" in out
    assert "choirbench tables --dataset other " in out and "--out results/tables/other/from_tiny " in out
    assert "choirbench figures --dataset other " in out
    gaps = next(line for line in out.splitlines() if line.startswith("Shell command: choirbench test-set-gaps"))
    assert "--main tiny --sf sf-us sf-us-synth --baselines nmf2 --J 4 --out results/tables/tiny/test_sets" in gaps
    assert "results/metrics/tiny/sf-us/seed1/J4.parquet" in gaps and "results/metrics/other/from_tiny/" in gaps
    assert not (work / "results").exists()
    none = dry_run(work, "[]")
    assert none.returncode == 0 and "from_tiny" not in none.stdout and "test-set-gaps" not in none.stdout


@pytest.mark.parametrize("test_sets, message", [
    ("[nope]", "config key test_sets[0] names 'nope', which has no entry under 'datasets'"),
    ("[other, tiny]", "config key test_sets[1] names 'tiny', the run's own dataset"),
    ("[{dataset: other, methods: [unet]}]", "config key test_sets[0].methods[0] names 'unet', which is not run"),
])
def test_bad_test_sets_are_refused_at_load(tmp_path, test_sets, message):
    run = dry_run(tmp_path / "wf", test_sets)
    assert run.returncode != 0 and message in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "wf" / "results").exists()


@pytest.mark.parametrize("test_sets, ok", [
    (["a", {"dataset": "b", "J": [4], "max_examples": 10, "methods": ["nmf2"]}], True),
    ([{"dataset": "b", "J": [5]}], False),
    ([{"dataset": "b", "max_exemples": 3}], False),
    ([{"J": [4]}], False),
])
def test_schema_of_test_sets(test_sets, ok):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = {"dataset": "d", "datasets": {"d": {}}, "methods": {}, "test_sets": test_sets}
    if ok:
        validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    else:
        with pytest.raises(WorkflowError, match="test_sets"):
            validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))


def test_default_config_has_the_nasal_test_set_of_the_same_pieces():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    main, nasal = config["datasets"]["synth-chorales"], config["datasets"]["synth-chorales-nasal"]
    assert nasal["tract"] == "nasal" and nasal["splits"] == ["test"] and nasal["kind"] == "synth-chorales"
    # the same draw of pieces and singers: every knob but the tract and the splits rendered
    assert {k: v for k, v in nasal.items() if k not in ("kind", "tract", "splits")} == main
    nasal_set = next(t for t in config["test_sets"] if t["dataset"] == "synth-chorales-nasal")
    assert nasal_set["J"] == [4] and nasal_set["max_examples"] == 10
    # the entries its gaps compare (sf against nmf2 and the U-Net) and the paper's comparisons are run there
    assert {"nmf2", "unet-full", "sf-us-full", "sf-sv-full", "mixture", "oracle"} <= set(nasal_set["methods"])
    assert set(nasal_set["methods"]) <= set(config["methods"])
    # El Rossinyol is there to be named (overlay), never in the default's test sets: no ../shared needed
    assert "rossinyol" in config["datasets"]
    assert all((t if isinstance(t, str) else t["dataset"]) != "rossinyol" for t in config["test_sets"])


@pytest.mark.slow
def test_tiny_real_run_with_a_nasal_test_set(tmp_path):
    """mixture, oracle, nmf2 and a 4-step sf on a few seconds of the synthetic choir, tested again on the
    same piece sung through the nasal tract: the test set's tables, box plot and the gaps table."""
    work = tmp_path / "wf"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    (work / "config").mkdir()
    synth = {"kind": "synth-chorales", "pieces": {"train": 1, "valid": 1, "test": 1}, "truncate_quarters": 12,
             "singers_per_part": 1, "preview": False, "seed": 0}
    config = {
        "dataset": "synth-ci",
        "datasets": {"synth-ci": synth, "synth-ci-nasal": {**synth, "tract": "nasal", "splits": ["test"]}},
        "J": [4], "seeds": [0],
        "examples": {"skip_first": False, "min_voiced": 0.25, "max_examples": {"valid": 1, "test": 2}},
        "methods": {"mixture": {"model": "mixture"}, "oracle": {"model": "oracle"},
                    "nmf2": {"model": "nmf2", "params": {"iterations": 5}},
                    "sf-us": {"model": "sf", "params": {"supervised": False, "steps": 4, "valid_every": 2,
                                                        "checkpoint_every": 2, "max_valid_examples": 1}}},
        "test_sets": ["synth-ci-nasal"], "robustness": {"enabled": False}, "report": False,
    }
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "all"], cwd=work,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    res = work / "results"
    assert (res / "tables" / "synth-ci-nasal" / "from_synth-ci" / "J4.md").is_file()
    assert (res / "figures" / "synth-ci-nasal" / "from_synth-ci" / "boxplot_J4.png").stat().st_size > 10_000
    assert not (res / "models" / "synth-ci-nasal").exists()
    gaps = pd.read_csv(res / "tables" / "synth-ci" / "test_sets.csv")
    assert set(gaps["test_set"]) == {"synth-ci", "synth-ci-nasal"} and set(gaps["baseline"]) == {"nmf2"}
    assert gaps["gap_db"].notna().all()
    assert "| sf-us | nmf2 |" in (res / "tables" / "synth-ci" / "test_sets.md").read_text()
    # the same excerpts of the same piece and singers; the same F0, another voice
    main = pd.read_csv(res / "data" / "synth-ci" / "examples" / "J4_test.csv")
    nasal = pd.read_csv(res / "testsets" / "synth-ci-nasal" / "J4_test.csv")
    assert list(nasal["example_id"]) == list(main["example_id"])
    manifest = pd.read_csv(res / "data" / "synth-ci-nasal" / "manifest.csv")
    assert set(manifest["split"]) == {"test"}
    stem = manifest["audio"].iloc[0]
    f0 = manifest["f0"].iloc[0]
    assert (res / "data" / "synth-ci" / f0).read_bytes() == (res / "data" / "synth-ci-nasal" / f0).read_bytes()
    from choirbench.io import read_wav
    a, _ = read_wav(res / "data" / "synth-ci" / stem)
    b, _ = read_wav(res / "data" / "synth-ci-nasal" / stem)
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-3)


def test_rossinyol_overlay_dry_run(tmp_path):
    """The documented way to test the default run's models on El Rossinyol: the overlay on
    config/config.yaml asks for the real choir through the synth-chorales checkpoints."""
    work = tmp_path / "wf"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copytree(ROOT / "config", work / "config")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "2", "test_sets", "--configfile",
                          "config/config.yaml", "config/overlays/rossinyol_test_set.yaml"], cwd=work,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("choirbench separate-set --data results/data/rossinyol --examples results/testsets/rossinyol/J4_test.csv "
            "--method-config results/config/synth-chorales/methods/sf-us-full.json "
            "--checkpoint results/models/synth-chorales/sf-us-full/seed1/J4/model.pt") in run.stdout
    assert "results/tables/rossinyol/from_synth-chorales/J4.md" in run.stdout
    assert not (work / "results").exists()


def test_rossinyol_block_points_at_the_shared_stems(shared_data):
    """The default config's rossinyol block names the real stems (skips without ../shared)."""
    root = shared_data / "csd_rossinyol_sections"
    if not root.is_dir():
        pytest.skip(f"{root} is not available")
    block = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["datasets"]["rossinyol"]
    assert (ROOT / block["root"]).resolve() == root.resolve()
