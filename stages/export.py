"""DVC stage `export`: the training set from the cut-outs and their quality report.

Reads params: export, evaluate, cache. Writes DATASET_DIR (see kiridashi.export). With
``export.enabled: false`` (the default) it writes only ``DATASET_DIR/export_report.json`` saying
so: the stage is in the pipeline, the dataset is opt-in (``dvc exp run -S export.enabled=true``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kiridashi.cache import open_cache
from kiridashi.evaluate import REPORT
from kiridashi.export.dataset import disabled_report, export_dataset, summary_text
from kiridashi.export.settings import ExportError
from kiridashi.logs import setup_logging
from kiridashi.pipeline import stage_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output_dir", help="output folder of the merge stage")
    parser.add_argument("report_dir", help="folder of the evaluate stage's quality report")
    parser.add_argument("dataset_dir", help="the training-set folder to write")
    args = parser.parse_args(argv)
    setup_logging()
    params = stage_params()
    try:
        if not (params.get("export") or {}).get("enabled", False):
            print(disabled_report(Path(args.dataset_dir)))
            return
        doc = export_dataset(
            Path(args.output_dir),
            Path(args.dataset_dir),
            params,
            open_cache(params.get("cache")),
            report_path=Path(args.report_dir) / REPORT,
        )
    except ExportError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(summary_text(doc, Path(args.dataset_dir)))


if __name__ == "__main__":
    main()
