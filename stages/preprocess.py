"""DVC stage `preprocess`: decode and clean every input image.

Reads params: preprocess, cache. Writes OUT_DIR/manifest.json (pixels stay in the cache).
"""

from __future__ import annotations

import argparse

from kiridashi.logs import setup_logging
from kiridashi.pipeline import run_manifest_stage, stage_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input_dir", help="folder of images (searched recursively)")
    parser.add_argument("out_dir", help="stage output folder")
    args = parser.parse_args(argv)
    setup_logging()
    run_manifest_stage("preprocess", stage_params(), args.out_dir, input_dir=args.input_dir)


if __name__ == "__main__":
    main()
