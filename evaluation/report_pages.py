"""Pages of the HTML report that Snakemake embeds as items: the claims and tables rendered from their
Markdown, audio players for a few test excerpts, a spectrogram panel, and the run's provenance.

Snakemake's report shows an item inline when it is HTML or an image, a download link otherwise
(``snakemake --report``); so every page here is one small standalone HTML file (styles inline, audio
as ``data:`` URIs), written atomically.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf

from choirbench import SAMPLE_RATE, ChoirbenchError
from choirbench.io import read_wav, write_text

log = logging.getLogger(__name__)

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 0.5em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.2em; } h3 { font-size: 1em; }
audio { height: 30px; width: 320px; vertical-align: middle; }
table.listen td { text-align: center; padding: 2px 4px; } table.listen th { text-align: left; }
.muted { color: #666; font-size: 12px; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def markdown_page(markdown_path: Path, out: Path, title: str | None = None) -> None:
    """Render one of the run's Markdown files (claims.md, J{J}.md, ...: headings, paragraphs, pipe
    tables) to a standalone HTML page. Raises ChoirbenchError when the file cannot be read."""
    import markdown

    path = Path(markdown_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ChoirbenchError(f"{path}: cannot read ({err})") from None
    body = markdown.markdown(text, extensions=["tables", "sane_lists"], output_format="html")
    write_text(out, _page(title or path.stem, body))


MAX_PAGE_BYTES = 1_500_000
"""Largest page the report can show: Snakemake embeds an HTML item as a base64 ``data:`` URI in an
iframe, and Chromium refuses URLs over 2 MiB (a blank frame), so the audio is MP3 and split into
one page per excerpt and voice."""


def audio_data_uri(audio: np.ndarray, sr: int = SAMPLE_RATE) -> str:
    """A mono float signal as a ``data:`` URI that every browser plays: MP3 (libsndfile's compression
    level 0.5, ~40 kbit/s for a 16-kHz voice, a sixth of a 16-bit WAV), or a 16-bit PCM WAV where this libsndfile cannot write MP3.
    Samples beyond ±1 are clipped."""
    audio = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0)
    buffer = io.BytesIO()
    if "MP3" in sf.available_formats():
        sf.write(buffer, audio, sr, format="MP3", subtype="MPEG_LAYER_III", compression_level=0.5)
        mime = "audio/mpeg"
    else:
        sf.write(buffer, audio, sr, format="WAV", subtype="PCM_16")
        mime = "audio/wav"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _player(audio: np.ndarray, sr: int) -> str:
    return f"<audio controls preload=\"metadata\" src=\"{audio_data_uri(audio, sr)}\"></audio>"


def audio_page(ex: dict, voice: int, out: Path, *, J: int) -> None:
    """Players for one voice of one excerpt: the mixture, the reference voice and every method's
    estimate of it (in the box plots' order), one row each.

    ``ex``: ``example_id``, ``parts`` (voice names), ``mixture`` (samples), ``voices`` (voices x
    samples), ``sr`` (Hz) and ``estimates`` (method -> voices x samples, in the order of ``parts``);
    ``voice``: index into ``parts``. One page per voice keeps a page of 20 methods well under
    :data:`MAX_PAGE_BYTES`; a larger one is written with a warning (Chromium may not show it).
    """
    from choirbench.evaluation.figures import figure_order

    sr, part = ex["sr"], ex["parts"][voice]
    rows = [("mixture (input)", ex["mixture"]), (f"reference {part}", ex["voices"][voice])]
    rows += [(m, ex["estimates"][m][voice]) for m in figure_order(ex["estimates"])]
    body = [f"<h2>Listen: voice {html.escape(part)} of {html.escape(str(ex['example_id']))} (J = {J})</h2>",
            "<p class=\"muted\">Levels as the methods wrote them (no normalisation), so that a quiet or loud "
            "estimate sounds as it scores; MP3 of the 16-kHz signals. <code>mixture</code> is the mixture "
            "&divide; J bound, <code>oracle</code> the ideal ratio mask.</p><table class=\"listen\">"]
    body += [f"<tr><th>{html.escape(label)}</th><td>{_player(audio, sr)}</td></tr>" for label, audio in rows]
    body.append("</table>")
    page = _page(f"Listen: {ex['example_id']} {part}", "\n".join(body))
    if len(page) > MAX_PAGE_BYTES:
        log.warning("%s: %.1f MB, more than a browser may show inside the report", out, len(page) / 1e6)
    write_text(out, page)


def missing_audio_page(examples_csv: Path, available: int, number: int, out: Path) -> None:
    """The page of a listen slot the test list cannot fill (it holds fewer excerpts than asked for).

    The report's pages are fixed when the workflow loads, before the test list exists; a short list
    (a tiny config) says so here instead of failing the whole run.
    """
    body = (f"<h2>Listen: excerpt {number}</h2><p class=\"muted\">{html.escape(str(examples_csv))} holds "
            f"{available} excerpt(s); there is no excerpt {number} to listen to (config report_audio.excerpts).</p>")
    write_text(out, _page(f"Listen: excerpt {number} (none)", body))


def load_excerpts(data_root: Path, examples_csv: Path, estimates: dict[str, Path], n: int,
                  excerpt_s: float) -> list[dict]:
    """The first ``n`` excerpts of a test list with their references and every method's estimates
    (``estimates``: method -> folder holding ``{example_id}/{voice}.wav``). Raises ChoirbenchError
    when an estimate is missing or has the wrong length."""
    from choirbench.data_prep.prepared import load_example, read_examples

    rows = list(read_examples(Path(examples_csv)).itertuples())[:n]
    excerpts = []
    for row in rows:
        ex = load_example(Path(data_root), row, excerpt_s=excerpt_s)
        est = {}
        for method, folder in estimates.items():
            voices = []
            for part in ex.parts:
                path = Path(folder) / ex.example_id / f"{part}.wav"
                audio, _ = read_wav(path)
                if len(audio) != len(ex.mixture):
                    raise ChoirbenchError(f"{path}: {len(audio)} samples, the excerpt has {len(ex.mixture)}")
                voices.append(audio)
            est[method] = np.stack(voices)
        excerpts.append({"example_id": ex.example_id, "parts": list(ex.parts), "mixture": ex.mixture,
                         "voices": np.asarray(ex.voices), "sr": ex.sr, "estimates": est})
    return excerpts


def spectrogram_panel(excerpt: dict, voice: int, out: Path) -> None:
    """One PNG: mel spectrograms (dB, one colour scale for all panels, 0 dB = the mixture's peak) of
    the mixture, the reference voice ``voice`` and every method's estimate of it."""
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from choirbench.evaluation.figures import figure_order, save_figure

    sr, part = excerpt["sr"], excerpt["parts"][voice]
    signals = [("mixture", excerpt["mixture"]), (f"reference {part}", excerpt["voices"][voice])]
    signals += [(f"{m}: {part}", excerpt["estimates"][m][voice]) for m in figure_order(excerpt["estimates"])]

    def mel(x):
        return librosa.feature.melspectrogram(y=np.asarray(x, dtype=np.float32), sr=sr, n_fft=1024,
                                              hop_length=256, n_mels=96, fmax=sr / 2)

    ref = float(mel(excerpt["mixture"]).max()) or 1.0
    ncols = 3
    nrows = -(-len(signals) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 2.6 * nrows), squeeze=False, sharex=True, sharey=True)
    image = None
    for ax, (label, x) in zip(axes.flat, signals):
        db = librosa.power_to_db(mel(x), ref=ref, top_db=None)
        image = librosa.display.specshow(np.maximum(db, -80.0), sr=sr, hop_length=256, x_axis="time",
                                         y_axis="mel", fmax=sr / 2, ax=ax, vmin=-80, vmax=0, cmap="magma")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("time (s)")
        ax.label_outer()
    for ax in axes.flat[len(signals):]:
        ax.axis("off")
    fig.suptitle(f"{excerpt['example_id']}: voice {part}", fontsize=11)
    fig.colorbar(image, ax=axes, shrink=0.8, label="dB (re mixture peak)")
    save_figure(fig, out)


def config_sha256(config: dict) -> str:
    """SHA-256 of the config as canonical JSON (sorted keys): same config, same hash."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def provenance(config: dict) -> dict[str, str]:
    """What this run was: dataset, config hash, seeds, date (UTC) and the versions that shaped it."""
    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "dataset": str(config.get("dataset", "")),
        "config sha256": config_sha256(config),
        "training seeds": ", ".join(map(str, config.get("seeds", []))),
        "excerpt seed": str((config.get("examples") or {}).get("seed", "")),
        "J": ", ".join(map(str, config.get("J", []))),
        "methods": ", ".join(config.get("run") or list(config.get("methods", {}))),
        "date (UTC)": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        **{name: version(name) for name in ("choirbench", "torch", "numpy", "snakemake")},
        "Python": platform.python_version(),
        "platform": platform.platform(),
    }


def provenance_page(config: dict, out: Path) -> None:
    """The provenance table and the full config (JSON) as a standalone HTML page."""
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in provenance(config).items())
    body = (f"<h2>Provenance</h2><table>{rows}</table><h3>Config</h3>"
            f"<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True))}</pre>")
    write_text(out, _page("Provenance", body))


__all__ = ["MAX_PAGE_BYTES", "audio_page", "config_sha256", "load_excerpts", "markdown_page", "provenance", "provenance_page",
           "spectrogram_panel", "audio_data_uri"]
