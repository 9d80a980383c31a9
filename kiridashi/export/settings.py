"""The ``export`` config section (``conf/export/default.yaml``), checked once before any work.

A wrong value is an :class:`ExportError` (one line for the user), never a failure half-way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kiridashi import checks as kchecks
from kiridashi.export import canvas as kcanvas
from kiridashi.export.captions import check_template

FORMATS = ("kohya", "folder")
HASHES = ("phash", "dhash", "average_hash", "whash")


class ExportError(ValueError):
    """Bad input or settings for an export: the run stops with this one line, nothing written."""


@dataclass(frozen=True)
class ExportSettings:
    """Typed ``export`` settings; see conf/export/default.yaml for what each one means."""

    enabled: bool = False
    format: str = "kohya"
    name: str = "demo"
    repeats: int = 10
    background: str = "transparent"
    canvas: str = "square"
    side: int = 1024
    max_upscale: float = 2.0
    min_side_px: int = 0
    caption: str = "{name}, {tags}"
    tags_ext: str = ".txt"
    min_score: float = 0.0
    min_iou: float = 0.0
    ignore_flags: tuple[str, ...] = field(default_factory=tuple)
    dedup: bool = True
    dedup_hash: str = "phash"
    dedup_distance: int = 8

    @property
    def background_rgb(self) -> tuple[int, int, int] | None:
        return kcanvas.parse_background(self.background)

    def render_params(self) -> dict[str, Any]:
        """What one rendered image depends on (its cache key)."""
        return {
            "background": self.background_rgb,
            "canvas": self.canvas,
            "side": self.side,
            "max_upscale": self.max_upscale,
        }

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ignore_flags"] = list(self.ignore_flags)
        return d


def _number(cfg: dict, key: str, kind: type, default: Any, low: float | None = None) -> Any:
    value = cfg.get(key, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        number = kind(value)
    except (TypeError, ValueError):
        raise ExportError(f"export.{key} must be a number, not {value!r}") from None
    if low is not None and number < low:
        raise ExportError(f"export.{key} must be at least {low}, not {value!r}")
    return number


def load_settings(cfg: dict | None) -> ExportSettings:
    """:class:`ExportSettings` from the ``export`` section; raises ExportError on a bad value."""
    cfg = dict(cfg or {})
    if "size" in cfg:
        raise ExportError(
            "export.size is not a setting: the canvas side is export.side (DVC ignores changes "
            "to a param named size)"
        )
    known = set(ExportSettings.__dataclass_fields__)
    if unknown := sorted(set(cfg) - known):
        raise ExportError(
            f"export.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})"
        )
    fmt = str(cfg.get("format", "kohya"))
    if fmt not in FORMATS:
        raise ExportError(f"export.format {fmt!r}: use {' or '.join(FORMATS)}")
    flags = cfg.get("ignore_flags") or []
    if isinstance(flags, str):
        flags = [flags]
    if bad := [f for f in flags if f not in kchecks.CHECKS]:
        raise ExportError(
            f"export.ignore_flags: unknown check {bad[0]!r} (known: {', '.join(kchecks.CHECKS)})"
        )
    method = str(cfg.get("dedup_hash", "phash"))
    if method not in HASHES:
        raise ExportError(f"export.dedup_hash {method!r}: use one of {', '.join(HASHES)}")
    name = str(cfg.get("name", "demo") or "").strip()
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ExportError(f"export.name {cfg.get('name')!r}: a non-empty name without slashes")
    settings = ExportSettings(
        enabled=bool(cfg.get("enabled", False)),
        format=fmt,
        name=name,
        repeats=_number(cfg, "repeats", int, 10, 1),
        background=str(cfg.get("background", "transparent"))
        if not isinstance(cfg.get("background"), (list, tuple))
        else ",".join(str(v) for v in cfg["background"]),
        canvas=str(cfg.get("canvas", "square")),
        side=_number(cfg, "side", int, 1024, 8),
        max_upscale=_number(cfg, "max_upscale", float, 2.0, 0.01),
        min_side_px=_number(cfg, "min_side_px", int, 0, 0),
        caption=str(cfg.get("caption", "{name}, {tags}")),
        tags_ext=str(cfg.get("tags_ext", ".txt")),
        min_score=_number(cfg, "min_score", float, 0.0),
        min_iou=_number(cfg, "min_iou", float, 0.0),
        ignore_flags=tuple(flags),
        dedup=bool(cfg.get("dedup", True)),
        dedup_hash=method,
        dedup_distance=_number(cfg, "dedup_distance", int, 8, 0),
    )
    if settings.canvas not in kcanvas.CANVASES:
        raise ExportError(f"export.canvas {settings.canvas!r}: use {' or '.join(kcanvas.CANVASES)}")
    for check in (lambda: settings.background_rgb, lambda: check_template(settings.caption)):
        try:
            check()
        except ValueError as exc:
            raise ExportError(f"export.{exc}") from None
    return settings
