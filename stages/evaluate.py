"""DVC stage `evaluate`: quality report, DVC metrics/plots and the dashboard.

Reads params: evaluate. Writes REPORT_DIR/unified_quality_report.json + dashboard.html and
METRICS_DIR/metrics.json + per_image.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiridashi.config import load_params
from kiridashi.evaluate import REPORT, run_evaluation, summary_text
from kiridashi.logs import setup_logging
from kiridashi.pipeline import RESULTS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output_dir", help="output folder of the merge stage")
    parser.add_argument("report_dir", help="folder for the report and dashboard")
    parser.add_argument("metrics_dir", help="folder for metrics.json and per_image.csv")
    args = parser.parse_args(argv)
    setup_logging()
    report = run_evaluation(
        Path(args.output_dir) / RESULTS,
        Path(args.report_dir),
        Path(args.metrics_dir),
        load_params()["evaluate"],
    )
    print(summary_text(report))
    print(f"report: {Path(args.report_dir) / REPORT}")


if __name__ == "__main__":
    main()
