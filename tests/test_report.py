"""The report's pages (claims and tables as HTML, audio players, spectrogram, provenance), the box
plots' method order and styles, and the training progress line."""
import base64
import io
import json
import re

import numpy as np
import pandas as pd
import soundfile as sf
from conftest import make_tiny_dataset

from choirbench import SAMPLE_RATE
from choirbench.cli import main
from choirbench.data_prep.prepared import write_examples
from choirbench.evaluation import report_pages
from choirbench.evaluation.figures import boxplots, figure_order, method_styles
from choirbench.evaluation.tables import write_tables
from choirbench.harness import read_entry, separate_examples
from choirbench.training import progress_line


def metric_table(rng) -> pd.DataFrame:
    """A long metric table: 4 excerpts x 4 voices x 3 frames, J = 4, where nmf2 is clearly better
    than nmf1 and the mixture's SAR is far above every method's (a clipped axis)."""
    base = {"mixture": -4.0, "oracle": 12.0, "nmf1": 1.0, "nmf2": 6.0, "sf-us": 3.0}
    rows = []
    for method, level in base.items():
        for metric in ("SDR", "SI-SDR", "SAR"):
            for e, v, f in np.ndindex(4, 4, 3):
                value = 150.0 if (method, metric) == ("mixture", "SAR") else level + rng.normal(0, 0.5)
                rows.append({"dataset": "d", "method": method, "seed": 0, "J": 4, "example_id": f"x{e}",
                             "voice": "SATB"[v], "frame": f, "metric": metric, "value": value})
    return pd.DataFrame(rows)


def test_claims_and_tables_render_as_html_tables(tmp_path):
    write_tables(metric_table(np.random.default_rng(0)), tmp_path / "tables", "d")
    main(["report-pages", "--markdown", str(tmp_path / "tables" / "claims.md"), str(tmp_path / "tables" / "J4.md"),
          "--out", str(tmp_path / "report")])
    claims = (tmp_path / "report" / "claims.html").read_text()
    j4 = (tmp_path / "report" / "J4.html").read_text()
    assert claims.startswith("<!doctype html>") and "<table>" in claims and "<th>" in claims
    # the claims' verdict column and the markdown's pipes turned into cells, not left as text
    assert re.search(r"<td[^>]*>(holds|refuted|inconclusive)</td>", claims)
    assert "|---" not in claims and "| " not in claims
    assert "<td>nmf2</td>" in j4 or re.search(r"<td[^>]*>[^<]*nmf2", j4)


def test_a_missing_markdown_file_is_one_line(tmp_path, capsys):
    assert main(["report-pages", "--markdown", str(tmp_path / "nope.md"), "--out", str(tmp_path)]) == 2
    assert "nope.md" in capsys.readouterr().err


def test_audio_data_uri_decodes_to_the_signal():
    x = 0.5 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    uri = report_pages.audio_data_uri(np.concatenate([x, [3.0]]))
    mime, payload = uri.split(",", 1)
    assert mime in ("data:audio/mpeg;base64", "data:audio/wav;base64")
    audio, sr = sf.read(io.BytesIO(base64.b64decode(payload)), dtype="float64")
    assert sr == SAMPLE_RATE and abs(len(audio) - (SAMPLE_RATE + 1)) <= 1152  # MP3 pads to whole frames
    # a lossy copy of the tone (not silence, not noise): correlation with the original near 1
    n = min(len(audio), SAMPLE_RATE)
    assert np.corrcoef(audio[:n], x[:n])[0, 1] > 0.95
    assert len(payload) < 0.25 * 4 / 3 * 2 * SAMPLE_RATE or mime.endswith("wav;base64")  # MP3: < 1/4 of a WAV


def test_audio_page_and_spectrogram_from_separated_excerpts(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", songs={"song1": "test"}, seconds=10.0, singers=1)
    examples = write_examples(data, 4, "test", seed=0, skip_first=False, max_examples=3)
    estimates = []
    for method in ("mixture", "oracle"):
        entry_path = tmp_path / f"{method}.json"
        entry_path.write_text(json.dumps({"id": method, "model": method}))
        separate_examples(data, examples, read_entry(entry_path), None, tmp_path / "est" / method)
        estimates.append(f"{method}={tmp_path / 'est' / method}")
    assert main(["report-pages", "--data", str(data), "--examples", str(examples), "--estimates", *estimates,
                 "--J", "4", "--excerpts", "2", "--out", str(tmp_path / "report")]) == 0
    pages = sorted((tmp_path / "report").glob("listen_J4_*.html"))
    assert [p.name for p in pages] == [f"listen_J4_{n}_v{v}.html" for n in (1, 2) for v in (1, 2, 3, 4)]
    for page in (p.read_text() for p in pages):
        # mixture, the reference voice and 2 methods' estimates of it, each an <audio> with its data inside
        assert page.count("<audio ") == 4
        assert len(re.findall(r'<audio [^>]*src="data:audio/(mpeg|wav);base64,', page)) == 4
        assert "<th>oracle</th>" in page and "<th>mixture</th>" in page and "<th>reference " in page
        assert len(page) < report_pages.MAX_PAGE_BYTES
    assert "reference S" in pages[0].read_text() and "reference B" in pages[3].read_text()
    assert len({p.read_text() for p in pages}) == len(pages)
    png = (tmp_path / "report" / "spectrogram_J4.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_a_missing_estimate_is_named(tmp_path, capsys):
    data = make_tiny_dataset(tmp_path / "data", songs={"song1": "test"}, seconds=10.0, singers=1)
    examples = write_examples(data, 4, "test", seed=0, skip_first=False, max_examples=1)
    assert main(["report-pages", "--data", str(data), "--examples", str(examples),
                 "--estimates", f"sf={tmp_path / 'none'}", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "none") in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "r").glob("listen_*.html"))


def test_provenance_page_names_config_hash_versions_seeds_and_date(tmp_path):
    config = {"dataset": "synth-ci", "J": [2, 4], "seeds": [0, 1], "examples": {"seed": 7}, "methods": {"nmf2": {}}}
    main(["report-pages", "--config-json", json.dumps(config), "--out", str(tmp_path)])
    page = (tmp_path / "provenance.html").read_text()
    for field in ("config sha256", "choirbench", "torch", "numpy", "snakemake", "Python", "date (UTC)",
                  "training seeds", "synth-ci"):
        assert field in page
    assert report_pages.config_sha256(config) in page and "<td>0, 1</td>" in page
    # the hash follows the content, not the key order
    assert report_pages.config_sha256(dict(reversed(list(config.items())))) == report_pages.config_sha256(config)
    assert report_pages.config_sha256({**config, "seeds": [0]}) != report_pages.config_sha256(config)


def test_box_plot_order_is_bounds_nmfs_unets_sf_and_styles_by_family():
    methods = ["sf-us", "unet-small", "oracle", "nmf2", "sf-sup-full", "mixture", "unet-full", "nmf1"]
    assert figure_order(methods) == ["mixture", "oracle", "nmf1", "nmf2", "unet-full", "unet-small",
                                     "sf-sup-full", "sf-us"]
    styles = method_styles(methods)
    assert styles["nmf1"][0] == styles["nmf2"][0] != styles["unet-full"][0]
    assert styles["nmf1"][1] != styles["nmf2"][1] and styles["sf-sup-full"][1] != styles["sf-us"][1]


def test_box_plots_write_a_png(tmp_path):
    boxplots(metric_table(np.random.default_rng(1)), 4, tmp_path / "box.png")
    assert (tmp_path / "box.png").read_bytes().startswith(b"\x89PNG")


def test_progress_line_gives_step_losses_and_eta():
    line = progress_line("sf-us seed 0", 120, 2000, 0.41321, 0.39812, 0.39812, 125.0, run_s=60.0, steps_run=20)
    assert line.startswith("progress sf-us seed 0: step 120/2000 (6%)")
    assert "loss 0.4132" in line and "valid 0.3981" in line and "elapsed 2:05" in line
    # 1880 steps left at 3 s a step (this process: 60 s for 20 steps) = 5640 s
    assert line.endswith("ETA 1:34:00")
    between = progress_line("u seed 1", 5, 10, 1.0, None, float("inf"), 5.0, run_s=0.0, steps_run=0)
    assert "valid -" in between and "best -" in between and between.endswith("ETA ?")


def test_more_excerpts_asked_than_listed_get_a_page_that_says_so(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", songs={"song1": "test"}, seconds=10.0, singers=1)
    examples = write_examples(data, 4, "test", seed=0, skip_first=False, max_examples=1)
    entry_path = tmp_path / "oracle.json"
    entry_path.write_text(json.dumps({"id": "oracle", "model": "oracle"}))
    separate_examples(data, examples, read_entry(entry_path), None, tmp_path / "est")
    assert main(["report-pages", "--data", str(data), "--examples", str(examples), "--estimates",
                 f"oracle={tmp_path / 'est'}", "--excerpts", "3", "--out", str(tmp_path / "r")]) == 0
    assert "<audio" in (tmp_path / "r" / "listen_J4_1_v1.html").read_text()
    for number in (2, 3):  # the report's pages are fixed before the list exists: a short list says so
        page = (tmp_path / "r" / f"listen_J4_{number}_v4.html").read_text()
        assert "holds 1 excerpt(s); there is no excerpt" in page and "<audio" not in page
