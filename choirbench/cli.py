"""``choirbench <step>``: every workflow step as a command a person can also run by hand."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from choirbench import EXCERPT_SECONDS, ChoirbenchError


def _threads(n: int) -> None:
    """Pin numeric libraries to the cores Snakemake gave this job."""
    import torch

    torch.set_num_threads(max(1, n))


def _json_option(text: str | None, option: str):
    """The value of a JSON command-line option (None when absent); one line naming the option when not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ChoirbenchError(f"{option}: not valid JSON ({err})") from None


def cmd_snapshot(args) -> None:
    from choirbench.io import write_text

    content = _json_option(args.json, "--json")
    write_text(Path(args.out), json.dumps(content, indent=2, sort_keys=True) + "\n")


def cmd_prepare(args) -> None:
    from choirbench.data_prep.datasets import prepare

    params = json.loads(Path(args.params).read_text()) if args.params else {}
    kind = params.pop("kind", args.kind or args.dataset)
    prepare(kind, params, Path(args.out))


def _f0_mixture_params(given: str | None, assigner: str | None) -> dict:
    """The ``f0_mixture`` knobs: ``given`` (JSON file or inline JSON object), then ``assigner``."""
    params = {}
    if given:
        text = given if given.lstrip().startswith("{") else None
        if text is None:
            if not Path(given).is_file():
                raise ChoirbenchError(f"{given}: f0_mixture params file not found")
            text = Path(given).read_text()
        try:
            params = json.loads(text)
        except json.JSONDecodeError as err:
            raise ChoirbenchError(f"{given}: not valid JSON ({err})") from None
        if not isinstance(params, dict):
            raise ChoirbenchError(f"{given}: expected a JSON object of f0_mixture knobs")
    if assigner:
        params["assigner"] = assigner
    return params


def _mixture_training_songs(data: Path, given: str) -> list[str]:
    """The training songs of the trained entries given F0 from the mixture (JSON list of method entries)."""
    from choirbench.data_prep.prepared import read_manifest
    from choirbench.harness import ENTRY_DEFAULTS, training_songs

    entries = _json_option(given, "--train-entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ChoirbenchError("--train-entries: expected a JSON list of method entries")
    manifest = read_manifest(data)
    all_train = sorted(manifest.loc[manifest["split"] == "train", "song"].astype(str).unique())
    songs: set[str] = set()
    for entry in entries:
        chosen = training_songs(data, {**ENTRY_DEFAULTS, "id": "?", **entry})
        songs.update(all_train if chosen is None else chosen)
    return sorted(songs)


def cmd_f0(args) -> None:
    from choirbench.data_prep.f0 import F0_SOURCE_DIRS, make_f0

    log = logging.getLogger("choirbench")
    _threads(args.threads)
    if args.mixture:  # one recording -> the table `separate --f0` reads
        if args.data or args.source:
            raise ChoirbenchError("f0: give either a mixture WAV (with --out) or --data/--source, not both")
        if not args.out:
            raise ChoirbenchError("f0: --out is required with a mixture WAV (the F0 table to write)")
        from choirbench.io import read_wav, write_csv
        from choirbench.data_prep.voice_assignment import ASSIGN_DEFAULTS, estimate_f0, parse_voices
        import numpy as np
        import pandas as pd
        from choirbench import HOP, SAMPLE_RATE

        params = _f0_mixture_params(args.params, args.assigner)
        voices = parse_voices(args.voices, where="--voices")
        audio, rate = read_wav(Path(args.mixture), sr=None, allow_silence=True)
        f0 = estimate_f0(audio, rate, "".join(voices), params, block_s=args.block_s)
        table = pd.DataFrame({"time_s": np.round(np.arange(f0.shape[1]) * HOP / SAMPLE_RATE, 6),
                              **{v: np.round(track, 4) for v, track in zip(voices, f0)}})
        write_csv(Path(args.out), table)
        log.info("%s: F0 of %s (%d frames of 16 ms, assigner %s) -> %s", args.mixture, "".join(voices),
                 f0.shape[1], params.get("assigner", ASSIGN_DEFAULTS["assigner"]), args.out)
        return
    if not args.data or not args.source:
        raise ChoirbenchError("f0: give a mixture WAV (with --out), or --data and --source for a prepared dataset")
    songs = None
    if args.source == "mixture" and args.train_entries is not None:
        songs = _mixture_training_songs(Path(args.data), args.train_entries)
    written = make_f0(Path(args.data), args.source,
                      _f0_mixture_params(args.params, args.assigner) if args.source == "mixture" else None,
                      songs=songs, examples=[Path(p) for p in args.examples or []])
    log.info("%d F0 files written (%s)", written, args.source)
    (Path(args.data) / F0_SOURCE_DIRS[args.source] / ".complete").touch()


def cmd_examples(args) -> None:
    from choirbench.data_prep.prepared import write_examples

    write_examples(Path(args.data), args.J, args.split, seed=args.seed, excerpt_s=args.excerpt_s,
                   skip_first=not args.keep_first,
                   singer=json.loads(args.singer) if args.singer and args.singer.startswith("{") else args.singer, min_voiced=args.min_voiced,
                   max_examples=args.max_examples or None)


def cmd_train(args) -> None:
    from choirbench.harness import read_entry, train

    entry = read_entry(Path(args.method_config))
    _threads(args.threads)
    train(Path(args.data), entry, args.seed, Path(args.out), Path(args.valid), J=args.J)


def cmd_separate_set(args) -> None:
    from choirbench.data_prep.f0_corruption import parse_corruption
    from choirbench.harness import read_entry, separate_examples

    entry = read_entry(Path(args.method_config))
    specs = args.f0_corruption or [None]  # several F0 corruptions: one process, one --out folder each
    if len(specs) != len(args.out):
        raise ChoirbenchError(f"--out: give one folder per --f0-corruption spec ({len(specs)} specs, "
                              f"{len(args.out)} folders)")
    for spec in filter(None, specs):
        parse_corruption(spec)  # every typo before any work
    _threads(args.threads)
    for spec, out in zip(specs, args.out):
        separate_examples(Path(args.data), Path(args.examples), entry,
                          Path(args.checkpoint) if args.checkpoint else None, Path(out),
                          f0_corruption=spec, corruption_seed=args.corruption_seed)


def cmd_separate(args) -> None:
    from choirbench.harness import ENTRY_DEFAULTS, entry_from_checkpoint, read_entry, separate_file

    if args.method_config:
        entry = read_entry(Path(args.method_config))
    elif args.checkpoint:  # a model file alone: separate with the entry it was trained with
        params = json.loads(args.params) if args.params else {}
        entry = entry_from_checkpoint(Path(args.checkpoint), args.method, params)
    elif not args.method:
        raise ChoirbenchError("give --method, --method-config or --checkpoint")
    else:
        try:
            params = json.loads(args.params) if args.params else {}
        except json.JSONDecodeError as err:
            raise ChoirbenchError(f"--params is not valid JSON ({err}): e.g. '{{\"iterations\": 50}}'") from None
        if not isinstance(params, dict):
            raise ChoirbenchError(f"--params must be a JSON object of the method's knobs, got {params!r}")
        entry = dict(ENTRY_DEFAULTS, id=args.method, model=args.method, params=params)
    _threads(args.threads)
    for path in separate_file(Path(args.mixture), Path(args.f0) if args.f0 else None, entry,
                              Path(args.checkpoint) if args.checkpoint else None, Path(args.out),
                              Path(args.notes) if args.notes else None,
                              voices=args.voices, f0_params=_f0_mixture_params(args.f0_params_arg, args.assigner),
                              block_s=args.block_s, overlap_s=args.overlap_s, batch_size=args.batch_size):
        print(path)


def cmd_convert_checkpoint(args) -> None:
    from choirbench.harness import convert_checkpoint, read_entry

    convert_checkpoint(Path(args.old), Path(args.new), read_entry(Path(args.method_config)))
    print(args.new)


def cmd_evaluate(args) -> None:
    from choirbench.evaluation.evaluate import evaluate_set, write_table

    if len(args.estimates) != len(args.out):  # several sets (robustness study): one table each
        raise ChoirbenchError(f"--out: give one table per --estimates folder ({len(args.estimates)} folders, "
                              f"{len(args.out)} tables)")
    for estimates, out in zip(args.estimates, args.out):
        table = evaluate_set(Path(args.data), Path(args.examples), Path(estimates), dataset=args.dataset,
                             method=args.method, seed=args.seed, J=args.J, excerpt_s=args.excerpt_s,
                             metrics=tuple(args.metrics) if args.metrics else None)
        write_table(table, Path(out))


def cmd_f0_accuracy(args) -> None:
    from choirbench.evaluation.f0_accuracy import dataset_f0_accuracy, write_f0_accuracy

    table = dataset_f0_accuracy(Path(args.data), [Path(p) for p in args.examples])
    write_f0_accuracy(table, Path(args.out), Path(args.figure) if args.figure else None, dataset=args.dataset)


def cmd_tables(args) -> None:
    from choirbench.evaluation.aggregate import read_tables
    from choirbench.evaluation.tables import write_tables

    training = _json_option(args.training, "--training")
    if training is not None:
        if not isinstance(training, dict) or not all(isinstance(v, dict) and "trained_by" in v
                                                     for v in training.values()):
            raise ChoirbenchError('--training: expected {"method": {"trained_by": ..., "steps": ..., '
                                  '"patience": ...}, ...}')
    verdicts, f0_pairs = _json_option(args.verdicts, "--verdicts"), _json_option(args.f0_pairs, "--f0-pairs")
    if f0_pairs is not None and not (isinstance(f0_pairs, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in f0_pairs.items())):
        raise ChoirbenchError('--f0-pairs: expected {"entry given mixture F0": "its truth-F0 twin", ...}')
    write_tables(read_tables([Path(p) for p in args.metrics]), Path(args.out), args.dataset,
                 training=training, train_logs=[Path(p) for p in args.train_logs], verdicts=verdicts,
                 f0_pairs=f0_pairs)


def cmd_figures(args) -> None:
    from choirbench.evaluation.aggregate import read_tables
    from choirbench.evaluation.figures import boxplots, training_curves

    out = Path(args.out)
    if args.metrics:
        table = read_tables([Path(p) for p in args.metrics])
        for J in sorted(table["J"].unique()):
            boxplots(table, int(J), out / f"boxplot_J{J}.png", title=f"{args.dataset}, J = {J}")
    if args.curves is not None:
        logs = {}
        from choirbench.evaluation.claims import parse_train_log_path

        for path in map(Path, args.train_logs or []):
            # results/models/{dataset}/{method}/seed{seed}/J{J}/train_log.csv
            entry, seed, J = parse_train_log_path(path)
            logs[f"{entry} seed{seed}" + (f" J{J}" if J is not None else "")] = path
        training_curves(logs, Path(args.curves))


def cmd_report_pages(args) -> None:
    from choirbench.evaluation import report_pages

    out = Path(args.out)
    for path in map(Path, args.markdown):
        report_pages.markdown_page(path, out / f"{path.stem}.html")
    if args.config_json is not None:
        config = _json_option(args.config_json, "--config-json")
        report_pages.provenance_page(config, out / "provenance.html")
    if args.estimates:
        estimates = {}
        for item in args.estimates:
            method, sep, folder = item.partition("=")
            if not sep or not method or not folder:
                raise ChoirbenchError(f"--estimates: {item!r} is not METHOD=FOLDER")
            estimates[method] = Path(folder)
        if args.data is None or args.examples is None:
            raise ChoirbenchError("--estimates needs --data and --examples")
        excerpts = report_pages.load_excerpts(Path(args.data), Path(args.examples), estimates, args.excerpts,
                                              args.excerpt_s)
        if not excerpts:
            raise ChoirbenchError(f"{args.examples}: no excerpt to listen to")
        for number in range(len(excerpts) + 1, args.excerpts + 1):  # a short test list: say so on the page
            logging.getLogger("choirbench").warning("%s: %d excerpt(s), fewer than the %d to listen to",
                                                    args.examples, len(excerpts), args.excerpts)
            for voice in range(args.J):
                report_pages.missing_audio_page(Path(args.examples), len(excerpts), number,
                                                out / f"listen_J{args.J}_{number}_v{voice + 1}.html")
        for number, excerpt in enumerate(excerpts, 1):
            if len(excerpt["parts"]) != args.J:
                raise ChoirbenchError(f"{args.examples}: excerpt {excerpt['example_id']} has "
                                      f"{len(excerpt['parts'])} voices, not --J {args.J}")
            for voice in range(args.J):
                report_pages.audio_page(excerpt, voice, out / f"listen_J{args.J}_{number}_v{voice + 1}.html", J=args.J)
        report_pages.spectrogram_panel(excerpts[0], 0, out / f"spectrogram_J{args.J}.png")


def cmd_robustness_examples(args) -> None:
    from choirbench.data_prep.f0_corruption import study_excerpts
    from choirbench.data_prep.prepared import read_examples
    from choirbench.io import write_csv

    write_csv(Path(args.out), study_excerpts(read_examples(Path(args.examples)), args.max_examples))


def cmd_robustness(args) -> None:
    from choirbench.evaluation.robustness import write_robustness

    write_robustness([Path(p) for p in args.metrics], [Path(p) for p in args.references], Path(args.examples),
                     args.baselines, Path(args.tables_out), Path(args.figures_out), args.dataset)


def cmd_efficiency_plan(args) -> None:
    from choirbench.evaluation.efficiency import write_plan

    points = _json_option(args.points, "--points")
    write_plan(Path(args.data), points, Path(args.out))


def cmd_efficiency_curve(args) -> None:
    from choirbench.evaluation.efficiency import write_curve

    write_curve(Path(args.plan), [Path(p) for p in args.metrics], args.J, Path(args.tables_out), Path(args.figure))


def cmd_frugality(args) -> None:
    from choirbench.evaluation.frugality import write_frugality

    write_frugality(args.spec, Path(args.data), Path(args.out))


def cmd_test_set_gaps(args) -> None:
    from choirbench.evaluation.test_sets import write_gaps

    for path in write_gaps([Path(p) for p in args.metrics], args.sf, args.baselines, Path(args.out), args.main,
                           J=args.J):
        print(path)


def cmd_interpret(args) -> None:
    """The source-filter model's view of one voice of the first excerpt that has exported parameters."""
    from choirbench.evaluation.interpret import plot_parameters
    from choirbench.io import read_wav

    found = sorted(Path(args.estimates).glob("*/parameters.npz"))
    if not found:
        raise ChoirbenchError(f"{args.estimates}: no parameters.npz (only the sf method exports them)")
    folder = found[0].parent
    voices = sorted(p.stem for p in folder.glob("*.wav"))
    order = [v for v in "SATB" if v in voices]
    voice = args.voice if args.voice in order else order[0]
    audio, sr = read_wav(folder / f"{voice}.wav")
    plot_parameters(found[0], audio, sr, Path(args.out), voice=order.index(voice))


def cmd_validate(args) -> None:
    """Report what is missing or corrupt in a dataset; exit 1 when anything is (0 when clean)."""
    from choirbench.data_prep import validate as v

    given = [bool(args.dataset), bool(args.kind or args.root), bool(args.prepared)]
    if sum(given) != 1 or (args.kind or args.root) and not (args.kind and args.root):
        raise ChoirbenchError("give one of --dataset NAME, --kind KIND --root PATH, or --prepared PATH")
    if args.dataset:
        kind, params = v.dataset_params(args.dataset, Path(args.configfile))
    elif args.prepared:
        kind, params = "prepared", {"root": args.prepared}
    else:
        kind, params = args.kind, {"root": args.root}
    report = v.validate(kind, params, checksums=Path(args.checksums) if args.checksums else None)
    if args.write_checksums and report.problems:  # a list to trust later must come from a clean copy
        report.notes.append(f"{args.write_checksums} not written: this copy has problems (below)")
    elif args.write_checksums:
        n = v.write_checksums(report, Path(args.write_checksums))
        report.notes.append(f"sha256 of {n} files written to {args.write_checksums} "
                            f"(check later copies with --checksums {args.write_checksums})")
    print("\n".join(report.lines()))
    if args.out:
        report.write_csv(Path(args.out))
    if report.problems:
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="choirbench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("snapshot", help="write the config a workflow step reads (JSON), atomically")
    p.add_argument("--json", required=True, help="the content, as a JSON string")
    p.add_argument("--out", required=True, help="e.g. results/config/{dataset}/methods/{method}.json")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("prepare", help="convert or generate a dataset into the prepared format")
    p.add_argument("--dataset", required=True, help="dataset name (config key)")
    p.add_argument("--kind", help="converter id (default: from the params file, else the dataset name)")
    p.add_argument("--params", help="JSON file with the dataset's config block")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("f0", help="each voice's F0 estimated from a mixture WAV, or the F0 source of a prepared dataset",
                       description="choirbench f0 MIX.wav --voices SATB --out f0.csv   (the table `separate --f0` reads)\n"
                                   "choirbench f0 --data DIR --source pyin|score|mixture   (a prepared dataset)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mixture", nargs="?", help="mixture WAV (any rate, mono): estimate each voice's F0 from it")
    p.add_argument("--voices", default="SATB", help="voices sung in the mixture, e.g. SATB, SA, ATB (default SATB)")
    p.add_argument("--out", help="F0 table to write (CSV: time_s plus one column per voice, Hz, 0 = unvoiced)")
    p.add_argument("--data", help="prepared dataset folder")
    p.add_argument("--source", choices=["pyin", "score", "mixture"],
                   help="pyin: pYIN on each isolated voice; score: the aligned notes; mixture: from the mixtures")
    p.add_argument("--assigner", choices=["voas", "pitch_sort"], help="voice assignment (default: f0_mixture.assigner)")
    p.add_argument("--params", help="f0_mixture knobs: JSON file or inline JSON object")
    p.add_argument("--examples", nargs="*", help="with --source mixture: excerpt lists whose excerpts get F0 "
                                                  "estimated from their own mixture")
    p.add_argument("--train-entries", help="with --source mixture: JSON list of the trained method entries given "
                                           "mixture F0; their training songs get whole-song tracks "
                                           "(default: every song)")
    p.add_argument("--block-s", type=float, help="with a mixture WAV: seconds of salience computed per block "
                                                  "(memory grows with it; default 45)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.set_defaults(func=cmd_f0)

    p = sub.add_parser("examples", help="write the fixed excerpt list of one split and J")
    p.add_argument("--data", required=True, help="prepared dataset folder")
    p.add_argument("--J", type=int, required=True)
    p.add_argument("--split", required=True, choices=["train", "valid", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--excerpt-s", type=float, default=EXCERPT_SECONDS)
    p.add_argument("--keep-first", action="store_true", help="keep each song's first excerpt")
    p.add_argument("--singer", help="singer id for every part, or JSON {song: id} (default: seeded random)")
    p.add_argument("--min-voiced", type=float, default=0.0)
    p.add_argument("--max-examples", type=int, default=0)
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("train", help="train one method entry with one seed")
    p.add_argument("--data", required=True)
    p.add_argument("--method-config", required=True, help="JSON method entry (written by the workflow)")
    p.add_argument("--valid", required=True, help="validation excerpt list of J-voice excerpts (examples/J{J}_valid.csv)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--J", type=int, choices=[1, 2, 3, 4], default=None,
                   help="train for J-voice mixtures of random parts of the entry's train_parts (default: all of them)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("separate-set", help="separate every excerpt of a list (workflow step)")
    p.add_argument("--data", required=True)
    p.add_argument("--examples", required=True)
    p.add_argument("--method-config", required=True)
    p.add_argument("--checkpoint")
    p.add_argument("--out", required=True, nargs="+", help="output folder (one per --f0-corruption spec)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--f0-corruption", nargs="+", help="corrupt every excerpt's F0 first, e.g. offset_hz:+12, "
                   "offset_cents:-50, octave:+1@0.2, missing:0.3, voicing:0.1 (robustness study); several specs "
                   "separate once per spec")
    p.add_argument("--corruption-seed", type=int, default=0, help="seed of the F0 corruption's error pattern")
    p.set_defaults(func=cmd_separate_set)

    p = sub.add_parser("separate", help="separate your own recording (F0 from --f0, else estimated from it)")
    p.add_argument("mixture", help="mixture WAV (any rate, mono)")
    p.add_argument("--f0", help="CSV: time_s plus one column per voice (Hz, 0 = unvoiced); "
                                "without it each voice's F0 is estimated from the mixture first")
    p.add_argument("--voices", default="SATB", help="voices to estimate F0 for when there is no --f0 (default SATB)")
    p.add_argument("--assigner", choices=["voas", "pitch_sort"], help="voice assignment when there is no --f0")
    p.add_argument("--f0-params", dest="f0_params_arg", help="f0_mixture knobs (JSON file or object) when there is no --f0")
    p.add_argument("--method", help="method id (e.g. nmf1) when neither --method-config nor --checkpoint is given")
    p.add_argument("--method-config", help="JSON method entry (e.g. results/config/synth-chorales/methods/sf-us-full.json)")
    p.add_argument("--params", help="JSON string of method params (with --method)")
    p.add_argument("--checkpoint", help="model.pt of a trained method (alone: separate with the entry it records)")
    p.add_argument("--notes", help="CSV: voice,onset_s,offset_s,midi (optional)")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--block-s", type=float, help="separate a long recording in blocks of this many seconds "
                   "(default: the method's, e.g. sf 4, nmf 30); memory grows with it")
    p.add_argument("--overlap-s", type=float, help="seconds by which blocks overlap and cross-fade (default: the method's)")
    p.add_argument("--batch-size", type=int, default=8, help="blocks per call of a trained model (default 8)")
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("convert-checkpoint", help="rewrite a model.pt of the format before issue 18 (it records no "
                       "entry) in the current one, read without running code")
    p.add_argument("old", help="the old model.pt")
    p.add_argument("new", help="where to write the converted checkpoint")
    p.add_argument("--method-config", required=True, help="JSON method entry the model was trained with")
    p.set_defaults(func=cmd_convert_checkpoint)

    p = sub.add_parser("evaluate", help="BSS Eval v4, SI-SDR(i), spectral SNRs, MCD of one set of estimates -> Parquet")
    p.add_argument("--data", required=True)
    p.add_argument("--examples", required=True)
    p.add_argument("--estimates", required=True, nargs="+", help="estimates folder(s), one table each")
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--J", type=int, required=True)
    p.add_argument("--excerpt-s", type=float, default=EXCERPT_SECONDS)
    p.add_argument("--out", required=True, nargs="+", help="Parquet table(s), one per --estimates folder")
    p.add_argument("--metrics", nargs="+", help="only these metrics (default: all), e.g. SI-SDR")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("f0-accuracy", help="score a dataset's mixture F0 against its annotation (mir_eval)")
    p.add_argument("--data", required=True, help="prepared dataset folder (with f0_mixture/)")
    p.add_argument("--dataset", default="", help="dataset name for captions")
    p.add_argument("--examples", nargs="+", required=True, help="excerpt lists (e.g. examples/J4_test.csv)")
    p.add_argument("--out", required=True, help="output stem: writes {out}.csv and {out}.md")
    p.add_argument("--figure", help="PNG bar chart to write")
    p.set_defaults(func=cmd_f0_accuracy)

    p = sub.add_parser("tables", help="aggregate metric tables into CSV/Markdown/LaTeX; test the claims")
    p.add_argument("--dataset", required=True)
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--train-logs", nargs="*", default=[], help="train_log.csv of every trained model")
    p.add_argument("--training", help='JSON: {"method": {"trained_by": entry, "steps": N, "patience": N}} '
                                      "for every trainable method entry (convergence notes in claims.md)")
    p.add_argument("--f0-pairs", help='JSON: {"entry given mixture F0": "its twin given the annotated F0"}: '
                                       "writes f0_cost.{csv,md}")
    p.add_argument("--verdicts", default="{}", help="JSON: the config's `verdicts` block (alpha, bootstrap_resamples, "
                                                     "bootstrap_seed, plateau_tol, last_stretch)")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("figures", help="box plots per J and training curves")
    p.add_argument("--dataset", required=True)
    p.add_argument("--metrics", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--train-logs", nargs="*", default=[])
    p.add_argument("--curves", help="path of the training-curves PNG")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("report-pages", help="the report's pages: Markdown tables as HTML, audio players, a "
                                            "spectrogram panel, the run's provenance")
    p.add_argument("--markdown", nargs="*", default=[], help="Markdown files to render as {stem}.html")
    p.add_argument("--config-json", help="the run's config (JSON) for provenance.html")
    p.add_argument("--estimates", nargs="*", default=[], help="METHOD=FOLDER of separated J-voice excerpts "
                                                              "(listen_J{J}_{n}_v{voice}.html, n = 1..excerpts, voice = 1..J; "
                                                              "spectrogram_J{J}.png)")
    p.add_argument("--data", help="prepared dataset folder (references and mixtures)")
    p.add_argument("--examples", help="the J-voice test list the estimates were made from")
    p.add_argument("--J", type=int, default=4)
    p.add_argument("--excerpts", type=int, default=2, help="how many excerpts get players")
    p.add_argument("--excerpt-s", type=float, default=EXCERPT_SECONDS)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report_pages)

    p = sub.add_parser("robustness-examples", help="the robustness study's excerpts: a test list's rows spread evenly")
    p.add_argument("--examples", required=True, help="excerpt list (examples/J4_test.csv)")
    p.add_argument("--max-examples", type=int, required=True, help="how many (0 = all)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_robustness_examples)

    p = sub.add_parser("robustness", help="robustness to F0 errors: long table, summary, curves, breaking points")
    p.add_argument("--dataset", required=True)
    p.add_argument("--metrics", nargs="+", required=True, help=".../{method}/{corruption label}/J4.parquet")
    p.add_argument("--references", nargs="+", required=True,
                   help="the main run's tables of the same J and seed (uncorrupted F0, mixture, oracle)")
    p.add_argument("--examples", required=True, help="the robustness excerpt list")
    p.add_argument("--baselines", nargs="*", default=[], help="method ids of the NMF baselines")
    p.add_argument("--tables-out", required=True)
    p.add_argument("--figures-out", required=True)
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("test-set-gaps", help="sf's gap over nmf2 / the U-Net on each test set (config `test_sets`)")
    p.add_argument("--metrics", nargs="+", required=True, help="metric tables of the main run and of every extra "
                   "test set (told apart by their dataset column)")
    p.add_argument("--main", required=True, help="the dataset the models were trained on")
    p.add_argument("--sf", nargs="+", default=[], help="the sf entries")
    p.add_argument("--baselines", nargs="+", default=[], help="the baseline entries (e.g. nmf2 unet-full)")
    p.add_argument("--J", type=int, default=4)
    p.add_argument("--out", required=True, help="output stem: writes {out}.csv and {out}.md")
    p.set_defaults(func=cmd_test_set_gaps)

    p = sub.add_parser("efficiency-plan", help="data-efficiency curve: the songs of each point and the trained "
                       "model it reuses or needs (config `data_efficiency`)")
    p.add_argument("--data", required=True, help="prepared dataset (its manifest)")
    p.add_argument("--points", required=True, help="JSON list of points (written by the workflow)")
    p.add_argument("--out", required=True, help="plan (JSON)")
    p.set_defaults(func=cmd_efficiency_plan)

    p = sub.add_parser("efficiency-curve", help="data-efficiency curve: table and figure of median SI-SDR against "
                       "training audio")
    p.add_argument("--plan", required=True, help="the plan of efficiency-plan")
    p.add_argument("--metrics", nargs="+", required=True, help="the metric tables of every point's model")
    p.add_argument("--J", type=int, required=True)
    p.add_argument("--tables-out", required=True, help="writes data_efficiency_curve.{csv,md} here")
    p.add_argument("--figure", required=True, help="the figure (PNG)")
    p.set_defaults(func=cmd_efficiency_curve)

    p = sub.add_parser("frugality", help="per method entry: parameters, training audio, time, memory, energy estimate")
    p.add_argument("--data", required=True, help="prepared dataset (its manifest)")
    p.add_argument("--spec", required=True, help="JSON: entries, their models, benchmark files, energy model "
                   "(written by the workflow; see choirbench.evaluation.frugality)")
    p.add_argument("--out", required=True, help="writes frugality.{csv,md} here")
    p.set_defaults(func=cmd_frugality)

    p = sub.add_parser("interpret", help="figure: a voice's spectrogram with the sf model's F0 and vocal tract")
    p.add_argument("--estimates", required=True, help="results/estimates/{dataset}/{sf method}/seed0/J4")
    p.add_argument("--voice", default="A")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_interpret)
    p = sub.add_parser("validate", help="report what is missing or corrupt in a dataset (exit 1 when anything is)")
    p.add_argument("--dataset", help="dataset name: its block under `datasets` in --configfile")
    p.add_argument("--configfile", default="config/config.yaml", help="config holding --dataset's block")
    p.add_argument("--kind", help="converter id (bach10, csd, cantoria, dagstuhl, bcbq, stems, prepared), with --root")
    p.add_argument("--root", help="the dataset's folder, with --kind")
    p.add_argument("--prepared", help="a prepared folder, e.g. results/data/NAME")
    p.add_argument("--out", help="also write the report as CSV (one row per file checked)")
    p.add_argument("--checksums", help="sha256sum list of a trusted copy (from --write-checksums) to check against")
    p.add_argument("--write-checksums", help="record the sha256 of every file found in this list")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except ChoirbenchError as err:
        print(f"choirbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
