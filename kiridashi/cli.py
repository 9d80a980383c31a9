"""``kiridashi`` command line.

kiridashi extract INPUT_DIR OUTPUT_DIR [hydra overrides...]   one-shot folder -> cut-outs
kiridashi check --results OUT/extraction_results.json        quality report, checks, dashboard
kiridashi dashboard --report OUT/unified_quality_report.json  self-contained HTML
kiridashi trend                                              metric history, regression check
kiridashi overlay IMAGE_OR_RESULTS [--out DIR]               debug drawings
kiridashi models list|fetch NAME|path                        model files
kiridashi params [--check]                                   compose conf/ into params.yaml
kiridashi demo OUT_DIR                                       build the demo dataset
kiridashi export OUT_DIR DATASET_DIR [--format kohya|folder]  LoRA-ready training set
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kiridashi.logs import setup_logging

log = logging.getLogger("kiridashi")


def cmd_extract(args: argparse.Namespace) -> int:
    from kiridashi.cache import open_cache
    from kiridashi.config import compose
    from kiridashi.evaluate import run_evaluation, summary_text
    from kiridashi.pipeline import RESULTS, extract

    cfg = compose(args.overrides)
    if args.overlays:
        cfg["evaluate"] = {**cfg.get("evaluate", {}), "overlays": True}
    doc = extract(Path(args.input_dir), Path(args.output_dir), cfg)
    results = Path(args.output_dir) / RESULTS
    report = None
    if not args.no_check:
        report = run_evaluation(
            results, cfg=cfg.get("evaluate"), cache=open_cache(cfg.get("cache"))
        )
        if report["summary"]["scored"]:
            print(summary_text(report))
        print(f"report: {results.parent / 'unified_quality_report.json'}")
    elif args.overlays:
        from kiridashi.overlay import overlay_results

        overlay_results(results)
    if args.overlays:
        print(f"overlays: {results.parent / 'overlays'}")
    _notify_extraction(doc, Path(args.output_dir), cfg, report)
    return 0


def _notify_extraction(doc: dict, out_dir: Path, cfg: dict, report: dict | None = None) -> None:
    from kiridashi.notify import notify_extraction

    notify_extraction(doc, out_dir, cfg.get("notify"), report)


def cmd_check(args: argparse.Namespace) -> int:
    from kiridashi.cache import open_cache
    from kiridashi.config import compose
    from kiridashi.evaluate import REPORT, entries_text, run_evaluation, summary_text
    from kiridashi.notify import notify_check

    cfg = compose(args.overrides)
    report = run_evaluation(
        Path(args.results),
        cfg=cfg.get("evaluate"),
        dashboard=not args.no_dashboard,
        label=args.label,
        cache=open_cache(cfg.get("cache")),
    )
    print(entries_text(report))
    print(summary_text(report))
    print(f"report: {Path(args.results).parent / REPORT}")
    notify_check(report, cfg.get("notify"))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from kiridashi import history
    from kiridashi import io as kio
    from kiridashi.report import HISTORY_RUNS, write_dashboard

    report_path = Path(args.report)
    out = Path(args.out) if args.out else report_path.with_name("dashboard.html")
    report = kio.read_json(report_path)
    runs = history.load(Path(args.history) if args.history else None)
    runs = history.same_dataset(runs, report.get("input_dir"))[-HISTORY_RUNS:]
    export = kio.read_json(Path(args.export)) if args.export else None
    write_dashboard(report, out, runs, export)
    print(f"dashboard: {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from kiridashi.cache import open_cache
    from kiridashi.config import compose
    from kiridashi.export.dataset import export_dataset, summary_text
    from kiridashi.export.settings import ExportError

    overrides = list(args.overrides)
    overrides += [f"export.{k}={v}" for k in ("format", "name") if (v := getattr(args, k))]
    try:
        try:
            cfg = compose(overrides)
        except Exception as exc:  # noqa: BLE001 - Hydra/OmegaConf: a bad override is one line
            raise ExportError(f"config: {str(exc).splitlines()[0]}") from None
        report = Path(args.report) if args.report else None
        doc = export_dataset(
            Path(args.results_dir),
            Path(args.dataset_dir),
            cfg,
            open_cache(cfg.get("cache")),
            report,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(doc, Path(args.dataset_dir)))
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from kiridashi.cache import REPO_ROOT
    from kiridashi.config import compose, dump_params, load_params

    path = REPO_ROOT / "params.yaml"
    cfg = compose(args.overrides)
    if args.check:
        if load_params(path) != cfg:
            print("params.yaml differs from conf/: run `kiridashi params`", file=sys.stderr)
            return 1
        print("params.yaml matches conf/")
        return 0
    dump_params(cfg, path)
    print(f"wrote {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from kiridashi import models

    return models.main(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from kiridashi.demo import build_demo, format_summary

    summary = build_demo(Path(args.out_dir), n_images=args.n, seed=args.seed, source=args.source)
    print(format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiridashi", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="cut out every character of every image in a folder")
    p.add_argument("input_dir")
    p.add_argument("output_dir")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. segment=sam_vit_b")
    p.add_argument("--no-check", action="store_true", help="skip the quality report")
    p.add_argument(
        "--overlays",
        action="store_true",
        help="also draw debug overlays (boxes, face points, pose bones, mask outline) in overlays/",
    )
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("check", help="unified quality report of an output folder")
    p.add_argument("--results", required=True, help="path to extraction_results.json")
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--label", help="name of this run in the history")
    p.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. evaluate.checks.max_pieces=5"
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("dashboard", help="self-contained HTML dashboard from a quality report")
    p.add_argument("--report", required=True, help="path to unified_quality_report.json")
    p.add_argument("--out", help="output HTML (default: dashboard.html beside the report)")
    p.add_argument("--history", help="history file for the chart (default: the repo's)")
    p.add_argument("--export", help="an export_report.json: show its near-duplicate groups too")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("export", help="LoRA-ready training set from an output folder")
    p.add_argument("results_dir", help="output folder (extraction_results.json, crops/)")
    p.add_argument("dataset_dir", help="training-set folder to write (replaced when complete)")
    p.add_argument("--format", choices=["kohya", "folder"], help="layout (export.format)")
    p.add_argument("--name", help="concept / trigger word (export.name)")
    p.add_argument(
        "--report", help="quality report (default: the one beside the results, else built now)"
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. export.side=768")
    p.set_defaults(func=cmd_export)

    from kiridashi.history import add_parser as add_trend_parser
    from kiridashi.overlay import add_parser as add_overlay_parser

    add_overlay_parser(sub)
    add_trend_parser(sub)

    p = sub.add_parser("params", help="compose conf/ into params.yaml")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--check", action="store_true", help="only check that they agree")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("models", help="list, fetch or locate model files")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="known models and whether they are present")
    f = msub.add_parser("fetch", help="download a model (sha256-checked)")
    f.add_argument("names", nargs="+")
    msub.add_parser("path", help="print the models folder")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="build the demo dataset")
    p.add_argument("out_dir")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default="auto", choices=["auto", "renpy", "procedural"])
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Hydra overrides may also follow options (`extract IN OUT --no-check seg=...`), which a
    # positional nargs="*" does not collect
    unknown = [x for x in extra if x.startswith("-") or not hasattr(args, "overrides")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    setup_logging(args.verbose)
    from kiridashi.pipeline import FATAL, fatal_message

    try:
        return int(args.func(args) or 0)
    except FATAL as exc:
        print(f"error: {fatal_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
