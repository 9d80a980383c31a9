"""Logging set-up shared by the CLI and the DVC stages."""

from __future__ import annotations

import logging
import os


def setup_logging(verbose: bool = False) -> None:
    """One line per message on stderr: ``LEVEL name: message``. ``KIRIDASHI_LOG`` sets the level."""
    level = "DEBUG" if verbose else os.environ.get("KIRIDASHI_LOG", "INFO")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("absl", "PIL", "matplotlib", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
