"""DVC stage `detect`: faces, pose and one box per character, at every scale in detect.scales.

Reads params: detect, models_dir, cache. Writes OUT_DIR/manifest.json with the detections.
"""

from __future__ import annotations

import argparse

from kiridashi.logs import setup_logging
from kiridashi.pipeline import run_manifest_stage, stage_params


def describe(src, result: dict, record: dict) -> None:
    record["detections"] = result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream_dir", help="output folder of the preprocess stage")
    parser.add_argument("out_dir", help="stage output folder")
    args = parser.parse_args(argv)
    setup_logging()
    run_manifest_stage(
        "detect", stage_params(), args.out_dir, upstream_dir=args.upstream_dir, describe=describe
    )


if __name__ == "__main__":
    main()
