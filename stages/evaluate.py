"""DVC stage `evaluate`: quality report, DVC metrics/plots and the dashboard.

Reads params: evaluate, notify, cache (per-image report entries are cached: one changed image
is one entry of work). Writes REPORT_DIR/unified_quality_report.json + dashboard.html and
METRICS_DIR/metrics.json + per_image.csv. The end of the pipeline: sends the Pushover summary and
crops when credentials are configured.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiridashi import io as kio
from kiridashi.cache import open_cache
from kiridashi.evaluate import REPORT, entries_text, run_evaluation, summary_text
from kiridashi.logs import setup_logging
from kiridashi.notify import notify_extraction
from kiridashi.pipeline import RESULTS, stage_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output_dir", help="output folder of the merge stage")
    parser.add_argument("report_dir", help="folder for the report and dashboard")
    parser.add_argument("metrics_dir", help="folder for metrics.json and per_image.csv")
    args = parser.parse_args(argv)
    setup_logging()
    params = stage_params()
    results = Path(args.output_dir) / RESULTS
    report = run_evaluation(
        results,
        Path(args.report_dir),
        Path(args.metrics_dir),
        params["evaluate"],
        cache=open_cache(params.get("cache")),
        record_history=True,
    )
    print(entries_text(report))
    print(summary_text(report))
    print(f"report: {Path(args.report_dir) / REPORT}")
    notify_extraction(kio.read_json(results), Path(args.output_dir), params.get("notify"), report)


if __name__ == "__main__":
    main()
