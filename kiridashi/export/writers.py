"""Dataset layouts: where the images, captions and per-image records go.

* ``kohya`` — ``REPEATS_NAME/STEM.png`` + ``REPEATS_NAME/STEM.txt`` (the caption), the folder
  convention of kohya_ss sd-scripts (``10_demo/``: ten repeats per epoch of concept ``demo``).
* ``folder`` — ``STEM.png`` + ``metadata.jsonl``, one JSON record per image with ``file_name``
  first (the Hugging Face ``imagefolder`` convention): source, character index, box, scores,
  caption.

Writers write into the staging folder of an export; :mod:`kiridashi.export.dataset` renames it
into place at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiridashi import io as kio
from kiridashi.export.settings import ExportSettings

METADATA = "metadata.jsonl"


class Writer:
    """Base: ``add`` one image (PNG bytes) with its caption and record, then ``finish``."""

    def __init__(self, root: Path, settings: ExportSettings):
        self.root, self.settings = Path(root), settings

    @property
    def folder(self) -> str:
        """The images' folder relative to the dataset root ("" for the root itself)."""
        return ""

    def image_rel(self, stem: str) -> str:
        return f"{self.folder}/{stem}.png" if self.folder else f"{stem}.png"

    def add(self, stem: str, png: bytes, caption: str, record: dict[str, Any]) -> str:
        """Write one image; returns its path relative to the dataset root."""
        rel = self.image_rel(stem)
        kio.atomic_write_bytes(self.root / rel, png)
        return rel

    def finish(self) -> None:
        (self.root / self.folder).mkdir(parents=True, exist_ok=True)


class KohyaWriter(Writer):
    @property
    def folder(self) -> str:
        return f"{self.settings.repeats}_{self.settings.name}"

    def add(self, stem: str, png: bytes, caption: str, record: dict[str, Any]) -> str:
        rel = super().add(stem, png, caption, record)
        kio.atomic_write_text(self.root / self.folder / f"{stem}.txt", caption + "\n")
        return rel


class FolderWriter(Writer):
    def __init__(self, root: Path, settings: ExportSettings):
        super().__init__(root, settings)
        self.lines: list[str] = []

    def add(self, stem: str, png: bytes, caption: str, record: dict[str, Any]) -> str:
        rel = super().add(stem, png, caption, record)
        line = {"file_name": rel, **record, "caption": caption}
        self.lines.append(json.dumps(line, ensure_ascii=False))
        return rel

    def finish(self) -> None:
        super().finish()
        kio.atomic_write_text(self.root / METADATA, "".join(f"{x}\n" for x in self.lines))


def make_writer(root: Path, settings: ExportSettings) -> Writer:
    return {"kohya": KohyaWriter, "folder": FolderWriter}[settings.format](root, settings)
