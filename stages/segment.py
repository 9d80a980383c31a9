"""DVC stage `segment`: one soft mask per detected character, with the configured backend.

Reads params: segment, models_dir, cache. Writes OUT_DIR/manifest.json (masks stay in the cache).
"""

from __future__ import annotations

import argparse

from kiridashi.logs import setup_logging
from kiridashi.pipeline import run_manifest_stage, stage_params


def describe(src, result: dict, record: dict) -> None:
    record["masks"] = len(result["masks"])
    record["mask_fractions"] = [round(float((m >= 128).mean()), 5) for m in result["masks"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream_dir", help="output folder of the detect stage")
    parser.add_argument("out_dir", help="stage output folder")
    args = parser.parse_args(argv)
    setup_logging()
    run_manifest_stage(
        "segment", stage_params(), args.out_dir, upstream_dir=args.upstream_dir, describe=describe
    )


if __name__ == "__main__":
    main()
