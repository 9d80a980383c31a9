"""Captions: a template (``export.caption``) filled with the name and the image's own tags.

Tags come only from the user's sidecar files beside the source image: ``NAME_c<k>.txt`` for one
character of ``NAME.jpg``, else ``NAME.txt`` for all of its characters (comma- or line-separated,
as kohya_ss and booru taggers write them). Nothing is invented; an image without a sidecar file
gets a caption without tags. Empty items left by an empty field are removed
(``"{name}, {tags}"`` with no tags is ``"demo"``).
"""

from __future__ import annotations

import string
from pathlib import Path

FIELDS = ("name", "tags", "source", "character")


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` is a format string over :data:`FIELDS` only."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"caption {template!r}: {exc}") from None
    if bad := [n for n in names if n not in FIELDS]:
        raise ValueError(
            f"caption {template!r}: unknown field {{{bad[0]}}} (known: "
            + ", ".join(f"{{{f}}}" for f in FIELDS)
            + ")"
        )


def sidecar_files(source: Path, index: int, ext: str) -> list[Path]:
    """Candidate tag files of character ``index`` of ``source``, the most specific first."""
    return [
        source.with_name(f"{source.stem}_c{index}{ext}"),
        source.with_name(f"{source.stem}{ext}"),
    ]


def parse_tags(text: str) -> list[str]:
    """Tags of a sidecar file: split on commas and newlines, trimmed, empty and repeated dropped."""
    parts = (t.strip() for line in text.splitlines() for t in line.split(","))
    return list(dict.fromkeys(t for t in parts if t))


def read_tags(source: Path, index: int, ext: str) -> tuple[list[str], Path | None]:
    """(tags, the file they came from) for one character; ([], None) without a sidecar file.

    A sidecar file that is not UTF-8 text raises ValueError with a one-line reason.
    """
    for path in sidecar_files(source, index, ext):
        if path.is_file():
            try:
                return parse_tags(path.read_text(encoding="utf-8-sig")), path
            except UnicodeDecodeError:
                raise ValueError(f"tag file {path} is not UTF-8 text") from None
    return [], None


def tidy(text: str) -> str:
    """``a,, b ,`` -> ``a, b``: the comma-separated items of a caption, without empty ones."""
    return ", ".join(p.strip() for p in text.split(",") if p.strip())


def render_caption(template: str, name: str, tags: list[str], source: str, character: int) -> str:
    """The caption of one image (``source``: the source image's stem)."""
    text = template.format(name=name, tags=", ".join(tags), source=source, character=character)
    return tidy(" ".join(text.split()))
