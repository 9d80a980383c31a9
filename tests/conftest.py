"""Shared fixtures: real composed configs, an isolated cache, the optional ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is not there (user machines)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is for development and CI only)")
    return path


class DictMemo:
    """A memo that computes every time (the detectors' and segmenters' ``memo`` argument)."""

    def __call__(self, kind, params, compute):
        return compute()


def detected_set_image(dataset: str, name: str, cfg: dict, models_dir: Path):
    """(HxWx3 uint8 RGB image, HxW bool GT, the default detector's characters) of image
    ``name`` of ``../shared/datasets/<dataset>/images`` (skips without ../shared)."""
    import copy

    import cv2

    from kiridashi.detectors import detect_image

    path = shared_path("datasets", dataset, "images", f"{name}.jpg")
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    gt = cv2.imread(str(path.with_name(f"{name}_gt.png")), cv2.IMREAD_GRAYSCALE) >= 128
    memo, views = DictMemo(), {"original": rgb}
    return (
        rgb,
        gt,
        detect_image(rgb, copy.deepcopy(cfg["detect"]), models_dir, memo, views).characters,
    )


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own cache; models come from ../shared/models when it exists."""
    monkeypatch.setenv("KIRIDASHI_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("KIRIDASHI_HISTORY", str(tmp_path_factory.mktemp("history") / "runs.jsonl"))
    if (SHARED / "models").is_dir():
        monkeypatch.setenv("KIRIDASHI_MODELS_DIR", str(SHARED / "models"))
    monkeypatch.delenv("PUSHOVER_TOKEN", raising=False)
    monkeypatch.delenv("PUSHOVER_USER", raising=False)
    yield


@pytest.fixture
def cfg() -> dict:
    """The default configuration composed from conf/ (as `kiridashi extract` uses it)."""
    from kiridashi.config import compose

    return compose([])


@pytest.fixture
def segment_cfg(cfg) -> dict:
    """The default segmenter's constructor parameters (``cfg["segment"]`` without its meta keys)."""
    from kiridashi.segmenters.base import META_KEYS

    return {k: v for k, v in cfg["segment"].items() if k not in META_KEYS}


@pytest.fixture
def quirks_dir() -> Path:
    return shared_path("datasets", "quirks")


@pytest.fixture
def dev_images() -> Path:
    return shared_path("datasets", "dev", "images")


@pytest.fixture
def models_dir() -> Path:
    return Path(os.environ.get("KIRIDASHI_MODELS_DIR", REPO / "models"))


SAMPLE_DEV = (
    "renpy_eileen_happy__bg_c3",
    "godotvn_tachie__bg_club",
    "multi00__godotvn_tachie-renpy_eileen_happy__bg_sakura",
)


def _sample_images(dst: Path, names=SAMPLE_DEV, seed: int = 0, prefix: str = "") -> Path:
    """A few labelled images in ``dst``: dev images when ../shared exists, else the demo set.

    Without ../shared the images are procedural demo images of ``seed``, renamed with ``prefix``
    so that folders built with different seeds hold different files and different content.
    """
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    dev = SHARED / "datasets" / "dev" / "images"
    available = [n for n in names if (dev / f"{n}.jpg").exists()]
    if dev.is_dir() and available:
        for name in available:
            shutil.copy(dev / f"{name}.jpg", dst / f"{name}.jpg")
            shutil.copy(dev / f"{name}_gt.png", dst / f"{name}_gt.png")
        return dst
    from kiridashi.demo import build_demo

    build_demo(dst, n_images=len(names), seed=seed, source="procedural")
    if prefix:
        for f in sorted(dst.glob("demo*.*")):
            f.rename(f.with_name(prefix + f.name))
    return dst


@pytest.fixture
def sample_images(tmp_path) -> Path:
    """A folder with a few labelled images (NAME.jpg + NAME_gt.png), one multi-character."""
    return _sample_images(tmp_path / "input")


@pytest.fixture
def extra_image(tmp_path) -> Path:
    """One more labelled image, in its own folder."""
    return _sample_images(tmp_path / "extra", ("renpy_lucy_happy__bg_meadow",), 1, "extra_")


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)
