"""``kiridashi`` command line.

kiridashi extract INPUT_DIR OUTPUT_DIR [hydra overrides...]   one-shot folder -> cut-outs
kiridashi check --results OUT/extraction_results.json        quality report, checks, dashboard
kiridashi dashboard --report OUT/unified_quality_report.json  self-contained HTML
kiridashi trend                                              metric history, regression check
kiridashi overlay IMAGE_OR_RESULTS [--out DIR]               debug drawings
kiridashi models list|fetch NAME|path                        model files
kiridashi params [--check]                                   compose conf/ into params.yaml
kiridashi config show [overrides] | list [GROUP]             the composed config, group options
kiridashi demo OUT_DIR                                       build the demo dataset
kiridashi export OUT_DIR DATASET_DIR [--format kohya|folder]  LoRA-ready training set
kiridashi serve [--host H] [--port P] [--token T] [overrides]  HTTP API + web page (.[serve])

A mistake in a path, a setting or an input is one `error:` line and exit 2; --debug shows the
traceback of any failure.
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
    from kiridashi.evaluate import run_evaluation, summary_text
    from kiridashi.pipeline import RESULTS, extract
    from kiridashi.schema import compose_valid

    cfg = compose_valid(args.overrides)
    input_dir, out_dir = extract_paths(args.input_dir, args.output_dir)
    if args.overlays:
        cfg["evaluate"] = {**cfg.get("evaluate", {}), "overlays": True}
    doc = extract(input_dir, out_dir, cfg)
    if isinstance(out_dir, str):  # outputs at a URL: the quality check reads a local folder
        print(f"check: skipped for outputs at a URL (copy {out_dir} and run kiridashi check)")
        return 0
    results = out_dir / RESULTS
    report = None
    if not args.no_check:
        report = run_evaluation(
            results,
            cfg=cfg.get("evaluate"),
            cache=open_cache(cfg.get("cache")),
            record_history=args.history,
        )
        if report["summary"]["scored"]:
            print(summary_text(report))
        print(f"report: {results.parent / 'unified_quality_report.json'}")
    elif args.overlays:
        from kiridashi.overlay import overlay_results

        overlay_results(results)
    if args.overlays:
        print(f"overlays: {results.parent / 'overlays'}")
    _notify_extraction(doc, out_dir, cfg, report)
    return 0


def extract_paths(input_dir: str, output_dir: str) -> tuple[Path | str, Path | str]:
    """The input and output folders of ``extract`` (folders or fsspec URLs), checked before
    anything is written."""
    from kiridashi.io import BadInput
    from kiridashi.locations import check_input, location

    src, out = location(input_dir), location(output_dir)  # a URL stays a string
    check_input(src)
    if isinstance(out, Path) and out.exists() and not out.is_dir():
        raise BadInput(f"output is a file, not a folder: {out}")
    return src, out


def _notify_extraction(doc: dict, out_dir: Path, cfg: dict, report: dict | None = None) -> None:
    from kiridashi.notify import notify_extraction

    notify_extraction(doc, out_dir, cfg.get("notify"), report)


def cmd_check(args: argparse.Namespace) -> int:
    from kiridashi.cache import open_cache
    from kiridashi.evaluate import REPORT, entries_text, run_evaluation, summary_text
    from kiridashi.notify import notify_check
    from kiridashi.schema import compose_valid

    cfg = compose_valid(args.overrides)
    report = run_evaluation(
        Path(args.results),
        cfg=cfg.get("evaluate"),
        dashboard=not args.no_dashboard,
        label=args.label,
        cache=open_cache(cfg.get("cache")),
        record_history=True,  # an explicit quality check of a folder is recorded
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
    report = kio.read_document(report_path, "a unified_quality_report.json", "summary")
    runs = history.load(Path(args.history) if args.history else None)
    runs = history.same_dataset(runs, report.get("input_dir"))[-HISTORY_RUNS:]
    export = kio.read_json(Path(args.export)) if args.export else None
    write_dashboard(report, out, runs, export)
    print(f"dashboard: {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from kiridashi.cache import open_cache
    from kiridashi.export.dataset import export_dataset, summary_text
    from kiridashi.export.settings import ExportError
    from kiridashi.schema import compose_valid

    overrides = list(args.overrides)
    overrides += [f"export.{k}={v}" for k in ("format", "name") if (v := getattr(args, k))]
    cfg = compose_valid(overrides)  # a bad setting: one error: line, exit 2 (kiridashi.errors)
    try:
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


def cmd_serve(args: argparse.Namespace) -> int:
    from kiridashi.serve.server import serve

    return serve(args.overrides, host=args.host, port=args.port, token=args.token)


def cmd_params(args: argparse.Namespace) -> int:
    from kiridashi.cache import REPO_ROOT
    from kiridashi.config import dump_params, load_params
    from kiridashi.schema import compose_valid

    path = REPO_ROOT / "params.yaml"
    cfg = compose_valid(args.overrides)
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


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from kiridashi.schema import compose_valid, default_options, group_options

    if args.config_command == "show":
        cfg = compose_valid(args.overrides)
        print(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), end="")
        return 0
    options = group_options()
    if args.group and args.group not in options:
        from kiridashi.config import ConfigError

        raise ConfigError(f"{args.group}: unknown group (groups: {', '.join(options)})")
    defaults = default_options()
    for group in [args.group] if args.group else options:
        marked = [f"{o} (default)" if defaults.get(group) == o else o for o in options[group]]
        print(f"{group}: {', '.join(marked)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from kiridashi.demo import build_demo, format_summary

    summary = build_demo(Path(args.out_dir), n_images=args.n, seed=args.seed, source=args.source)
    print(format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from kiridashi import __version__

    parser = argparse.ArgumentParser(
        prog="kiridashi", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"kiridashi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of any failure"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="cut out every character of every image in a folder")
    p.add_argument("input_dir", help="folder of images (searched recursively)")
    p.add_argument("output_dir", help="folder for masks/, crops/ and extraction_results.json")
    p.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides, e.g. segment=sam_vit_b 'detect.scales=[1.0,1.5]' "
        "(kiridashi config list / config show)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the quality report")
    p.add_argument(
        "--overlays",
        action="store_true",
        help="also draw debug overlays (boxes, face points, pose bones, mask outline) in overlays/",
    )
    p.add_argument(
        "--history",
        action="store_true",
        help="record this run in the history for `kiridashi trend` ($KIRIDASHI_HISTORY, else "
        "history/runs.jsonl of the repo); by default only the DVC pipeline records runs",
    )
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("check", help="unified quality report of an output folder")
    p.add_argument("--results", required=True, help="path to extraction_results.json")
    p.add_argument("--no-dashboard", action="store_true", help="do not write dashboard.html")
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

    p = sub.add_parser(
        "serve", help="HTTP API and web page with the models loaded once (needs .[serve])"
    )
    p.add_argument("--host", help="address to bind (serve.host, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (serve.port, default 8765)")
    p.add_argument(
        "--token",
        help="required from clients (Bearer); needed to bind beyond 127.0.0.1; "
        "default $KIRIDASHI_TOKEN",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. jobs=2 serve.roots=[data]")
    p.set_defaults(func=cmd_serve)

    from kiridashi.history import add_parser as add_trend_parser
    from kiridashi.overlay import add_parser as add_overlay_parser

    add_overlay_parser(sub)
    add_trend_parser(sub)

    p = sub.add_parser("params", help="compose conf/ into params.yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides to compose with")
    p.add_argument("--check", action="store_true", help="only check that they agree")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("config", help="show the composed config or list the options of a group")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("show", help="the composed config (conf/ + overrides), checked, as YAML")
    c.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. segment=isnetis")
    c = csub.add_parser("list", help="the options of every group (or of GROUP)")
    c.add_argument("group", nargs="?", help="one group, e.g. segment")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("models", help="list, fetch or locate model files")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="known models and whether they are present")
    f = msub.add_parser("fetch", help="download a model (sha256-checked)")
    f.add_argument("names", nargs="+", help="model names (see models list)")
    msub.add_parser("path", help="print the models folder")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="build the demo dataset")
    p.add_argument("out_dir", help="folder for the images and their *_gt.png masks")
    p.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed: the same seed gives the same set"
    )
    p.add_argument(
        "--source",
        default="auto",
        choices=["auto", "renpy", "procedural"],
        help="character art: Ren'Py demo sprites when installed (auto), or drawn shapes",
    )
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
    setup_logging(args.verbose or args.debug)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user sees one line; --debug shows the rest
        if args.debug:
            raise
        return report_failure(exc)


def report_failure(exc: BaseException) -> int:
    """Print one ``error:`` line; 2 for the user's mistakes (paths, settings, inputs), 1 else."""
    from kiridashi.errors import is_user_error, one_line

    if is_user_error(exc):
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(
        f"error: {type(exc).__name__}: {one_line(exc)} (a bug? rerun with --debug for the "
        "traceback)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
