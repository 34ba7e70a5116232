"""The robustness study: aggregation on hand-made metric tables, and the workflow target end to end."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from choirbench import ChoirbenchError
from choirbench.data_prep.f0_corruption import grid_specs, parse_corruption
from choirbench.evaluation.evaluate import TABLE_COLUMNS
from choirbench.evaluation.robustness import (breaking_points, read_robustness_tables, summarise,
                                              write_robustness)
from conftest import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["song_SATB_0004000ms", "song_SATB_0008000ms", "song_SATB_0012000ms"]

# median SI-SDR per method and corruption (every frame of every excerpt and voice gets this value)
VALUES = {
    "nmf1": {"none": 5.0, "offset_hz=-30": 3.0, "offset_hz=+30": 3.0, "offset_hz=+60": 1.0, "missing=0.5": 0.0},
    "nmf2": {"none": 6.0, "offset_hz=-30": 4.0, "offset_hz=+30": 4.0, "offset_hz=+60": 2.0, "missing=0.5": 1.0},
    "sf-a": {"none": 10.0, "offset_hz=-30": 8.0, "offset_hz=+30": 5.0, "offset_hz=+60": 1.0, "missing=0.5": 7.0},
    "sf-b": {"none": 4.0, "offset_hz=-30": 3.5, "offset_hz=+30": 3.5, "offset_hz=+60": 3.5, "missing=0.5": 3.0},
    "mixture": {"none": -5.0},
    "oracle": {"none": 15.0},
}


def metric_table(method: str, value: float, silent_frames: int = 0) -> pd.DataFrame:
    rows = []
    for ex in EXAMPLES:
        for voice in "SATB":
            for frame in range(4):
                for metric in ("SDR", "SI-SDR"):
                    rows.append(["d", method, 0, 4, ex, voice, frame, metric, value + (metric == "SDR")])
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if silent_frames:
        table.loc[table.index[:silent_frames], "value"] = np.nan
    return table


@pytest.fixture
def tables(tmp_path):
    """Robustness tables under {method}/{label}/J4.parquet, references under main/{method}.parquet."""
    paths, refs = [], []
    for method, by_corruption in VALUES.items():
        for label, value in by_corruption.items():
            if label == "none":
                path = tmp_path / "main" / f"{method}.parquet"
                refs.append(path)
            else:
                path = tmp_path / "rob" / method / label / "J4.parquet"
                paths.append(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            metric_table(method, value, silent_frames=3 if label == "missing=0.5" else 0).to_parquet(path)
    examples = tmp_path / "J4_test.csv"
    pd.DataFrame({"example_id": EXAMPLES}).to_csv(examples, index=False)
    return paths, refs, examples


def test_summary_holds_every_method_corruption_and_the_true_f0(tables):
    long = read_robustness_tables(*tables)
    assert set(long["corruption"]) == {"none", "offset_hz:-30", "offset_hz:+30", "offset_hz:+60", "missing:0.5"}
    summary = summarise(long)
    si = summary[summary["metric"] == "SI-SDR"].set_index(["method", "corruption"])
    for method, by_corruption in VALUES.items():
        for label, value in by_corruption.items():
            assert si.loc[(method, label.replace("=", ":")), "median"] == value
    assert si.loc[("sf-a", "offset_hz:-30"), "size"] == -30 and si.loc[("sf-a", "missing:0.5"), "size"] == 0.5
    assert si.loc[("nmf1", "missing:0.5"), "n_excerpts"] == 3
    assert si.loc[("nmf1", "missing:0.5"), "nan_frames"] == 1  # 3 NaN rows, alternating SDR, SI-SDR, SDR


def test_breaking_points_walk_away_from_zero(tables):
    breaks = breaking_points(summarise(read_robustness_tables(*tables)), ["nmf1", "nmf2"])
    got = {(r.method, r.kind, r.direction, r.against): r for r in breaks.itertuples()}
    assert set(breaks["method"]) == {"sf-a", "sf-b"}                 # baselines and bounds get no row
    same, true = "same F0 errors", "true F0"
    # sf-a: 8 > 4 at -30 (beyond the grid); 5 > 4 at +30, 1 < 2 at +60 -> stops at +60
    minus = got["sf-a", "offset_hz", "-", same]
    assert np.isnan(minus.stops_at) and minus.grid_end == -30
    assert got["sf-a", "offset_hz", "+", same].stops_at == 60
    # against the baselines with the true F0 (6 dB): 5 dB at +30 no longer beats them
    assert got["sf-a", "offset_hz", "+", true].stops_at == 30
    assert got["sf-a", "missing", "+", same].beats_at_zero and np.isnan(got["sf-a", "missing", "+", same].stops_at)
    # sf-b is below the baselines even with the true F0
    assert not got["sf-b", "offset_hz", "+", same].beats_at_zero


def test_write_robustness_writes_tables_and_one_figure_per_kind(tables, tmp_path):
    written = write_robustness(*tables, ["nmf1", "nmf2"], tmp_path / "t", tmp_path / "f", "d")
    assert {p.name for p in written} == {"robustness.csv", "robustness_summary.csv", "robustness_breaking.csv",
                                         "robustness.md", "robustness_offset_hz.png", "robustness_missing.png"}
    assert (tmp_path / "f" / "robustness_offset_hz.png").stat().st_size > 10_000
    md = (tmp_path / "t" / "robustness.md").read_text()
    assert "| sf-a | 8.0 | 10.0 | 5.0 | 1.0 |" in md                # -30, 0, +30, +60
    assert "mixture -5.0 dB, oracle 15.0 dB" in md
    assert "| sf-a | offset_hz | beyond -30 | +60 | beyond -30 | +30 |" in md
    assert "| sf-b | offset_hz | not even at 0 |" in md


def test_bad_robustness_inputs_are_one_clear_error(tables, tmp_path):
    paths, refs, examples = tables
    wrong = tmp_path / "rob" / "nmf1" / "ofset_hz=+3" / "J4.parquet"
    wrong.parent.mkdir(parents=True)
    shutil.copy(paths[0], wrong)
    with pytest.raises(ChoirbenchError, match="unknown kind 'ofset_hz'"):
        read_robustness_tables([*paths, wrong], refs, examples)
    moved = tmp_path / "rob" / "nmf2" / "offset_hz=+90" / "J4.parquet"
    moved.parent.mkdir(parents=True)
    shutil.copy(paths[0], moved)                                      # nmf1's table in nmf2's folder
    with pytest.raises(ChoirbenchError, match="its folder says 'nmf2'"):
        read_robustness_tables([*paths, moved], refs, examples)
    more = tmp_path / "more.csv"
    pd.DataFrame({"example_id": [*EXAMPLES, "song_SATB_0016000ms"]}).to_csv(more, index=False)
    with pytest.raises(ChoirbenchError, match="scores other excerpts than"):
        read_robustness_tables(paths, refs, more)
    short = tmp_path / "short.parquet"                                # a main-run table missing an excerpt
    table = pd.read_parquet(refs[0])
    table[table["example_id"] != EXAMPLES[0]].to_parquet(short)
    with pytest.raises(ChoirbenchError, match="lack some robustness excerpts"):
        read_robustness_tables(paths, [short, *refs[1:]], examples)


# ------------------------------------------------------------------------------- the workflow target

CONFIG = """dataset: tiny
datasets:
  tiny: {{kind: prepared, root: {root}}}
J: [4]
seeds: [0]
examples: {{skip_first: false, max_examples: {{valid: 1, test: 2}}}}
methods:
  mixture: {{model: mixture}}
  oracle: {{model: oracle}}
  nmf2: {{model: nmf2, params: {{iterations: 5}}}}
robustness:
  max_examples: 1
  grids: {{offset_hz: [30], offset_cents: [], octave: [], missing: [0.5], voicing: []}}
{extra}
report: false
"""


def run_snakemake(work: Path, data_root: Path, target: str, *args: str, extra: str = "") -> subprocess.CompletedProcess:
    if not work.exists():
        work.mkdir(parents=True)
        shutil.copy(ROOT / "Snakefile", work / "Snakefile")
        shutil.copytree(ROOT / "workflow", work / "workflow")
        (work / "config").mkdir()
    (work / "config" / "config.yaml").write_text(CONFIG.format(root=data_root, extra=extra))
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args, target], cwd=work,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("robdata") / "data", seconds=9.0, singers=1)


@pytest.mark.slow
def test_robustness_target_end_to_end(tiny_data, tmp_path):
    bad = run_snakemake(tmp_path / "wf", tiny_data, "robustness", "-n", extra="  methods: [oracle]")
    assert bad.returncode != 0 and "does not read the F0" in bad.stdout + bad.stderr
    run = run_snakemake(tmp_path / "wf", tiny_data, "robustness")
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "wf" / "results"
    assert (out / "figures" / "tiny" / "robustness_offset_hz.png").stat().st_size > 10_000
    assert (out / "figures" / "tiny" / "robustness_missing.png").is_file()
    long = pd.read_csv(out / "tables" / "tiny" / "robustness.csv")
    assert set(long["corruption"]) == {"none", "offset_hz:+30", "missing:0.5"}
    assert long["example_id"].nunique() == 1 and set(long.loc[long.corruption != "none", "method"]) == {"nmf2"}
    summary = pd.read_csv(out / "tables" / "tiny" / "robustness_summary.csv")
    si = summary[summary["metric"] == "SI-SDR"].set_index(["method", "corruption"])["median"]
    # the wrong F0 costs nmf2 dearly; mixture and oracle are there as the reference lines
    assert si["nmf2", "offset_hz:+30"] < si["nmf2", "none"] - 3
    assert si["nmf2", "missing:0.5"] < si["nmf2", "none"]
    assert si["mixture", "none"] < si["oracle", "none"]
    assert (out / "robustness" / "tiny" / "nmf2" / "offset_hz=+30" / "J4.parquet").is_file()


def test_robustness_is_part_of_all_and_can_be_switched_off(tiny_data, tmp_path):
    on = run_snakemake(tmp_path / "wf", tiny_data, "all", "-n")
    assert on.returncode == 0, on.stderr[-3000:]
    assert "robustness_separate" in on.stdout and "robustness_tables" in on.stdout
    off = run_snakemake(tmp_path / "wf", tiny_data, "all", "-n", extra="  enabled: false")
    assert off.returncode == 0, off.stderr[-3000:]
    assert "robustness_separate" not in off.stdout


def schema_checked(block: dict) -> dict:
    from snakemake.utils import validate
    config = {"dataset": "d", "datasets": {"d": {}}, "methods": {}, "robustness": block}
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config["robustness"]


def test_default_block_and_grid_specs():
    block = schema_checked({})
    assert block["enabled"] and block["J"] == 4 and block["max_examples"] > 0
    specs = grid_specs(block)
    assert {parse_corruption(s).kind for s in specs} == {"offset_hz", "offset_cents", "octave", "missing", "voicing"}
    # the default run's block is the schema's defaults (one source of truth, shown in config.yaml)
    shown = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["robustness"]
    assert schema_checked(shown) == block
    paper = schema_checked(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["robustness"])
    assert len(grid_specs(paper)) > 3 * len(specs) and "offset_hz:+57" in grid_specs(paper)
    custom = schema_checked({"grids": {"offset_hz": [-3, 0, 3], "offset_cents": [], "octave": [-2, 1],
                                       "missing": [0.5], "voicing": []},
                             "octave_shares": [0.2, 1], "segments": {"missing": 1}})
    assert grid_specs(custom) == ["offset_hz:-3", "offset_hz:+3", "octave:-2@0.2", "octave:+1@0.2", "octave:-2@1",
                                  "octave:+1@1", "missing:0.5~1"]


@pytest.mark.parametrize("block", [{"octave_shares": [1.5]}, {"grid": {"offset_hz": [3]}},
                                   {"grids": {"octave": [4]}}, {"grids": {"missing": [2]}},
                                   {"segments": {"missing": 0}}, {"max_examples": -1}])
def test_bad_robustness_config_is_refused(block):
    with pytest.raises(Exception, match="robustness"):
        schema_checked(block)
