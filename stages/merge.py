"""DVC stage `merge`: final masks, RGBA crops and extraction_results.json.

Reads params: merge, cache. Writes the output contract into OUT_DIR.
"""

from __future__ import annotations

import argparse

from kiridashi.logs import setup_logging
from kiridashi.pipeline import stage_merge, stage_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream_dir", help="output folder of the segment stage")
    parser.add_argument("out_dir", help="output folder (masks/, crops/, extraction_results.json)")
    args = parser.parse_args(argv)
    setup_logging()
    stage_merge(stage_params(), args.upstream_dir, args.out_dir)


if __name__ == "__main__":
    main()
