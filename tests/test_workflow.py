"""End to end: the Snakemake workflow on a tiny config, twice, gives identical tables."""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """dataset: tiny
datasets:
  tiny: {{kind: prepared, root: {root}}}
J: [2, 4]
seeds: [0, 1]
examples: {{skip_first: false, max_examples: {{valid: 2, test: 3}}}}
methods:
  mixture: {{model: mixture}}
  oracle: {{model: oracle}}
  nmf1: {{model: nmf1}}
  nmf2-score-f0: {{model: nmf2, f0_source: score}}
{extra}
robustness: {{enabled: false}}   # tested in tests/test_robustness.py
report: false
"""


def run_workflow(work: Path, data_root: Path, extra: str = "") -> subprocess.CompletedProcess:
    work.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    (work / "config").mkdir()
    (work / "config" / "config.yaml").write_text(CONFIG.format(root=data_root, extra=extra))
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "all"], cwd=work,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("wf")
    data = make_tiny_dataset(base / "data", seconds=9.0, singers=1)
    runs = [run_workflow(base / f"run{i}", data) for i in (1, 2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    return [base / "run1", base / "run2"]


def test_workflow_writes_tables_figures_and_estimates(two_runs):
    out = two_runs[0] / "results"
    for J in (2, 4):
        for suffix in ("csv", "md", "tex"):
            assert (out / "tables" / "tiny" / f"J{J}.{suffix}").is_file()
        assert (out / "figures" / "tiny" / f"boxplot_J{J}.png").stat().st_size > 10_000
    wavs = list((out / "estimates" / "tiny" / "nmf1" / "seed0" / "J4").rglob("*.wav"))
    examples = pd.read_csv(out / "data" / "tiny" / "examples" / "J4_test.csv")
    assert len(examples) >= 2 and len(wavs) == len(examples) * 4
    assert (out / "benchmarks" / "evaluate" / "tiny" / "nmf1" / "seed0" / "J4.tsv").is_file()
    summary = pd.read_csv(out / "tables" / "tiny" / "summary.csv")
    sdr = summary[(summary.J == 4) & (summary.metric == "SDR") & (summary.voice == "all")].set_index("method")
    assert sdr.loc["oracle", "mean"] > sdr.loc["mixture", "mean"] + 5
    assert sdr.loc["nmf1", "mean"] > sdr.loc["mixture", "mean"]
    assert (out / "data" / "tiny" / "f0_score" / "song5" / "S1.csv").is_file()  # derived for nmf2-score-f0 only
    assert "nmf2-score-f0" in set(summary["method"])
    table = pd.read_parquet(out / "metrics" / "tiny" / "oracle" / "seed0" / "J2.parquet")
    assert list(table.columns) == ["dataset", "method", "seed", "J", "example_id", "voice", "frame", "metric", "value"]
    assert set(table["metric"]) == {"SDR", "ISR", "SIR", "SAR", "SI-SDR", "SI-SDRi", "spec-SNR", "spec-SI-SNR", "MCD"}
    claims = pd.read_csv(out / "tables" / "tiny" / "claims.csv")
    assert len(claims) and claims["verdict"].isin(["holds", "refuted", "inconclusive"]).all()
    assert claims[["ci_low", "ci_high", "p_holm"]].notna().all().all()


def test_same_config_gives_identical_tables(two_runs):
    for name in ("summary.csv", "J2.md", "J4.tex"):
        a = (two_runs[0] / "results" / "tables" / "tiny" / name).read_text()
        b = (two_runs[1] / "results" / "tables" / "tiny" / name).read_text()
        assert a == b, name


SMALL = """dataset: {dataset}
datasets:
  {dataset}: {{kind: prepared, root: {root}}}
J: [4]
seeds: [0]
examples: {{skip_first: false, max_examples: {{valid: 1, test: 2}}}}
methods:
  mixture: {{model: mixture}}
  oracle: {{model: oracle}}
  nmf2: {{model: nmf2, params: {{iterations: {iterations}}}}}
report: false
"""


def listing(results: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``results``: (mtime_ns, size, bytes)."""
    return {str(p.relative_to(results)): (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes())
            for p in sorted(results.rglob("*")) if p.is_file()}


def small_workdir(work: Path) -> Path:
    work.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    return work


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=work, capture_output=True, text=True)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("small") / "data", songs={"a": "train", "b": "valid", "c": "test"},
                             seconds=5.0, singers=1)


def test_dry_run_lint_and_dag_write_nothing(tmp_path, small_data):
    work = small_workdir(tmp_path / "wf")
    (work / "a.yaml").write_text(SMALL.format(dataset="tiny", root=small_data, iterations=5))
    for args in (["-n", "all"], ["--lint"], ["--dag"]):
        done = snakemake(work, *args, "--configfile", "a.yaml")
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert not (work / "results").exists(), args
        if args == ["--lint"]:
            assert "Lints for" not in done.stdout + done.stderr, done.stdout[-3000:]


def test_second_config_leaves_the_first_runs_files_byte_identical(tmp_path, small_data):
    work = small_workdir(tmp_path / "wf")
    (work / "a.yaml").write_text(SMALL.format(dataset="tiny", root=small_data, iterations=5))
    (work / "b.yaml").write_text(SMALL.format(dataset="tiny-b", root=small_data, iterations=7))
    first = snakemake(work, "--cores", "2", "all", "--configfile", "a.yaml")
    assert first.returncode == 0, first.stderr[-3000:]
    results = work / "results"
    snap = json.loads((results / "config" / "tiny" / "methods" / "nmf2.json").read_text())
    assert snap["params"] == {"iterations": 5} and snap["id"] == "nmf2"
    assert json.loads((results / "config" / "tiny" / "dataset.json").read_text())["kind"] == "prepared"
    before = listing(results)
    dry = snakemake(work, "-n", "all", "--configfile", "b.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert listing(results) == before  # a dry run writes nothing: same files, mtimes and bytes
    second = snakemake(work, "--cores", "2", "all", "--configfile", "b.yaml")
    assert second.returncode == 0, second.stderr[-3000:]
    after = listing(results)
    assert json.loads((results / "config" / "tiny-b" / "methods" / "nmf2.json").read_text())["params"] == {
        "iterations": 7}
    for name, (_, size, data) in before.items():
        assert after[name][1:] == (size, data), name
    # the first config again: nothing to do, its snapshots still match it
    again = snakemake(work, "-n", "all", "--configfile", "a.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
    # a changed knob rewrites that entry's snapshot and reruns only the steps that read it
    (work / "a.yaml").write_text(SMALL.format(dataset="tiny", root=small_data, iterations=6))
    dry = snakemake(work, "-n", "all", "--configfile", "a.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, flags=re.M))
    assert jobs.get("method_snapshot") == "1" and jobs.get("separate") == "1" and jobs.get("evaluate") == "1"
    assert "prepare_dataset" not in jobs and "dataset_snapshot" not in jobs, jobs


def test_the_readme_command_restarts_after_a_kill(tmp_path, small_data):
    """profiles/default is where Snakemake looks, so `rerun-incomplete` applies without an option."""
    work = small_workdir(tmp_path / "wf")
    shutil.copytree(ROOT / "profiles", work / "profiles")
    (work / "a.yaml").write_text(SMALL.format(dataset="tiny", root=small_data, iterations=400)
                                 .replace("  mixture: {model: mixture}\n  oracle: {model: oracle}\n", ""))
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "all", "--configfile", "a.yaml"],
                           cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    estimates = work / "results" / "estimates" / "tiny" / "nmf2" / "seed0" / "J4"
    try:
        deadline = time.monotonic() + 600
        while not list(estimates.rglob("*.wav")) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the whole run, as a kill -9 of the terminal would
        run.wait()
    assert list(estimates.rglob("*.wav")), "the separation finished or never started before the kill"
    refused = snakemake(work, "-n", "all", "--configfile", "a.yaml", "--workflow-profile", "none")
    assert refused.returncode != 0 and "Incomplete files" in refused.stdout + refused.stderr
    again = snakemake(work, "-n", "all", "--configfile", "a.yaml")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "profiles/default" in again.stdout + again.stderr
    assert re.search(r"^separate\s+1$", again.stdout, flags=re.M), again.stdout[-2000:]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_users_umask(tmp_path, umask, mode):
    import numpy as np

    from choirbench.io import write_text, write_wav

    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.txt", "x\n")
        write_wav(tmp_path / "a.wav", np.zeros(160, dtype=np.float32))
    finally:
        os.umask(old)
    for name in ("a.txt", "a.wav"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
