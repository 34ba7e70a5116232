"""End to end: the Snakemake workflow on a tiny config, twice, gives identical tables."""
import shutil
import subprocess
import sys
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
    assert set(table["metric"]) == {"SDR", "ISR", "SIR", "SAR", "SI-SDR"}


def test_same_config_gives_identical_tables(two_runs):
    for name in ("summary.csv", "J2.md", "J4.tex"):
        a = (two_runs[0] / "results" / "tables" / "tiny" / name).read_text()
        b = (two_runs[1] / "results" / "tables" / "tiny" / name).read_text()
        assert a == b, name
