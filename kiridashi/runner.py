"""Per-image steps of the pipeline, each cached by content.

Keys form a chain, so a result can be looked up without loading anything upstream:

- preprocess: image bytes hash + ``preprocess`` params
- detect:     preprocess key + ``detect`` params (+ models dir contents that matter to detectors)
- segment:    detect key (+ the detect keys of its background-plate partners) + ``segment``
  params
- merge:      segment key + ``merge`` params

Each key also holds the code version of the step, so a code change recomputes only that step.
Bulky intermediates (work images, soft masks) live only in the cache; a missing entry is simply
recomputed from the source file.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiridashi import io as kio
from kiridashi.cache import (
    ImageMemo,
    ResultCache,
    code_version,
    content_hash,
    make_key,
    params_digest,
)
from kiridashi.config import check_segment_input
from kiridashi.locations import read_bytes
from kiridashi.merge import build_merge_result
from kiridashi.preprocess import preprocess_image, resize_to_work
from kiridashi.types import Character

log = logging.getLogger(__name__)

STEPS = ("preprocess", "detect", "segment", "merge")
# modules whose source defines each step's results (code version of the cache key): each step's
# own code and every kiridashi module it imports that computes something (not the cache, config
# or model-file plumbing; tests/test_cache.py checks the imports against this)
STEP_CODE = {
    "preprocess": ("kiridashi.preprocess", "kiridashi.io"),
    "detect": ("kiridashi.detectors", "kiridashi.figures", "kiridashi.types", "kiridashi.metrics"),
    "segment": (
        "kiridashi.segmenters",
        "kiridashi.faces",
        "kiridashi.keypoints",
        "kiridashi.metrics",
    ),
    "merge": ("kiridashi.merge", "kiridashi.edges", "kiridashi.metrics"),
}
SCHEMA_VERSION = 1


def output_stem(rel: str) -> str:
    """``sub/NAME.jpg`` -> ``sub/NAME`` (the stem used for masks and crops)."""
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


@dataclass
class Source:
    """An input image: where it is, its bytes' hash, and (lazily) its bytes."""

    rel: str
    path: Path
    gt_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    known_hash: str | None = None
    # other images of the folder over the same background (:mod:`kiridashi.segmenters.plates`)
    partners: tuple[Source, ...] = ()

    @cached_property
    def data(self) -> bytes:
        return read_bytes(self.path)  # a local file or an fsspec URL

    @cached_property
    def hash(self) -> str:
        """xxh3 of the bytes; given by a manifest when known, so nothing is read for keys."""
        return self.known_hash or content_hash(self.data)

    def release(self) -> None:
        """Forget the file's bytes (the hash stays): a batch must not hold every image."""
        self.__dict__.pop("data", None)

    @classmethod
    def from_item(cls, item: kio.ImageItem) -> Source:
        return cls(rel=item.rel, path=item.path, gt_path=item.gt_path, notes=list(item.notes))

    def light(self) -> Source:
        """A copy that names the image only (no bytes, no partners): how a partner travels."""
        return Source(rel=self.rel, path=self.path, known_hash=self.known_hash or self.hash)


def reset_rng(seed: int = 0) -> None:
    """Seed OpenCV's and NumPy's global generators (GrabCut's k-means uses OpenCV's).

    Called before each image's model step, so a result never depends on which images the
    process handled before it (cached reruns, worker pools and resumed runs agree).
    """
    cv2.setRNGSeed(seed)
    np.random.seed(seed)


class Skipped(Exception):
    """The image cannot be processed; the message is the one-line reason."""


class Runner:
    """Runs and caches the per-image steps for one configuration.

    cfg: the composed config (sections ``preprocess``, ``detect``, ``segment``, ``merge``; a
    section may be absent when only later steps' keys are needed and the upstream key is given).
    """

    def __init__(self, cfg: dict[str, Any], cache: ResultCache, models_dir: Path):
        self.cfg = cfg
        self.cache = cache
        self.models_dir = Path(models_dir)
        self.counts: dict[str, Counter] = {s: Counter() for s in STEPS}
        self._outcome: dict[str, str] = {}  # the current image's outcome per step
        self._recent: OrderedDict[str, Any] = OrderedDict()
        self._last_decoded: tuple[str | None, Any] = (None, None)

    def tally(self) -> Counter:
        """All counts as one Counter: ``("step", step, outcome)`` (computed / reused / skipped)
        and ``("kind", sub_result_kind, outcome)`` (computed / reused). A worker returns
        ``tally() - before`` for one image and the parent adds it with :meth:`add_tally`."""
        out: Counter = Counter()
        for step, counts in self.counts.items():
            for outcome, n in counts.items():
                out["step", step, outcome] += n
        for kind, (computed, reused) in self.cache.stats.by_kind.items():
            out["kind", kind, "computed"] += computed
            out["kind", kind, "reused"] += reused
        return out

    def add_tally(self, delta: Counter) -> None:
        """Add a worker's count delta (see :meth:`tally`) to this runner's counts."""
        for (what, name, outcome), n in delta.items():
            if what == "step":
                self.counts[name][outcome] += n
            else:
                slot = self.cache.stats.by_kind.setdefault(name, [0, 0])
                slot[0 if outcome == "computed" else 1] += n

    @cached_property
    def versions(self) -> dict[str, str]:
        return {step: code_version(*mods) for step, mods in STEP_CODE.items()}

    @cached_property
    def memo_version(self) -> str:
        """Code version of the segmenter's own sub-results (e.g. SAM image embeddings).

        A backend class may list the modules its memoised values depend on in ``MEMO_MODULES``,
        so that editing another backend keeps them; otherwise the whole segment step counts.
        """
        from kiridashi.config import import_target

        target = (self.cfg.get("segment") or {}).get("_target_")
        modules = getattr(import_target(target), "MEMO_MODULES", None) if target else None
        return code_version(*(modules or STEP_CODE["segment"]))

    # -- keys ------------------------------------------------------------------------------
    def key(self, step: str, upstream: str, params_of: str | None = None) -> str:
        params = self.cfg[params_of or step]
        return make_key(step, self.versions[step], upstream, params)

    def begin_image(self) -> None:
        """Start counting one image (see :meth:`end_image`)."""
        self._outcome = {}

    def end_image(self, step: str, ok: bool) -> None:
        """Count the image just run up to ``step``: each step once, as computed, reused or
        skipped, so every step's counts add up to the images it saw.

        A step the image did not need (a later cached result stands for it) counts as reused;
        when the image was skipped, the step that failed and every step after it count as
        skipped.
        """
        steps = STEPS[: STEPS.index(step) + 1]
        done = [i for i, s in enumerate(steps) if self._outcome.get(s) in ("computed", "reused")]
        last_ok = len(steps) - 1 if ok else max(done, default=-1)
        for i, s in enumerate(steps):
            outcome = self._outcome.get(s)
            if i > last_ok or outcome == "skipped":
                outcome = "skipped"
            self.counts[s][outcome or "reused"] += 1
        self._outcome = {}

    def content(self, src: Source) -> str:
        """The source's content hash; an unreadable file is a preprocess skip."""
        try:
            return src.hash
        except kio.BadInput as exc:
            self._outcome["preprocess"] = "skipped"
            raise Skipped(str(exc)) from None

    def keys(self, src: Source, upto: str = "merge") -> dict[str, str]:
        """The key chain of one source image, from preprocess up to step ``upto``; with plate
        partners, their detect keys join the segment step's upstream."""
        chain: dict[str, str] = {}
        upstream = self.content(src)
        for step in STEPS[: STEPS.index(upto) + 1]:
            if step == "segment" and src.partners and self.plates is not None:
                others = [self.keys(p, "detect")["detect"] for p in src.partners]
                upstream = f"{upstream}+{params_digest(others)}"
            upstream = chain[step] = self.key(step, upstream)
        return chain

    def _cached(self, step: str, key: str, compute) -> Any:
        """Cached value of one step; the last few values stay in memory (one image's chain)."""
        if key in self._recent:
            return self._recent[key]
        value, computed = self.cache.get_or_compute(key, compute, kind=step)
        self._outcome.setdefault(step, "computed" if computed else "reused")
        self._recent[key] = value
        while len(self._recent) > len(STEPS):
            self._recent.popitem(last=False)
        return value

    # -- steps ------------------------------------------------------------------------------
    def preprocess(self, src: Source) -> dict:
        """{"image": work RGB HxWx3 uint8, "orig_hw": (H, W), "notes": [...]}; raises Skipped."""
        cfg = self.cfg["preprocess"]

        def compute() -> dict:
            try:
                decoded = self.decoded(src)
            except kio.BadInput as exc:
                return {"skip": str(exc)}
            image = preprocess_image(decoded.rgb, cfg)
            return {
                "image": image,
                "orig_hw": tuple(decoded.rgb.shape[:2]),
                "notes": decoded.notes,
            }

        value = self._cached("preprocess", self.key("preprocess", self.content(src)), compute)
        if "skip" in value:
            self._outcome["preprocess"] = "skipped"
            raise Skipped(value["skip"])
        return value

    def detect(self, src: Source) -> dict:
        """The detector result dict (``DetectResult.to_dict()``) for one image."""
        from kiridashi.detectors import detect_image

        pre_key = self.key("preprocess", self.content(src))
        key = self.key("detect", pre_key)

        def compute() -> dict:
            image = self.preprocess(src)["image"]
            views = self.cfg["detect"].get("views", [])
            others = {"original": self.work_original(src)} if "original" in views else {}
            reset_rng()
            memo = ImageMemo(self.cache, "detect", self.versions["detect"], pre_key)
            result = detect_image(image, self.cfg["detect"], self.models_dir, memo, others)
            return result.to_dict()

        return self._cached("detect", key, compute)

    def segment(self, src: Source) -> dict:
        """{"masks": [HxW uint8 soft masks 0..255], "characters": [...]} at work resolution."""
        from kiridashi.segmenters import segment_image

        keys = self.keys(src, "segment")

        def compute() -> dict:
            image = self.segment_input(src)
            det = self.detect(src)
            characters = [Character.from_dict(c) for c in det["characters"]]
            plate = self.plate_evidence(src) if src.partners else None
            reset_rng()
            memo = ImageMemo(self.cache, "segment", self.memo_version, keys["preprocess"])
            soft = segment_image(
                image, characters, self.cfg["segment"], self.models_dir, memo, plate
            )
            masks = [(np.clip(m, 0, 1) * 255).round().astype(np.uint8) for m in soft]
            return {
                "masks": masks,
                "characters": det["characters"],
                "rejected": det.get("rejected", []),
            }

        return self._cached("segment", keys["segment"], compute)

    # -- background plates (kiridashi.segmenters.plates) -----------------------------------
    @cached_property
    def plates(self) -> dict | None:
        """The segment config's ``plates`` section with defaults, or None when it is off."""
        from kiridashi.segmenters.plates import settings

        section = (self.cfg.get("segment") or {}).get("plates")
        return settings(section) if section and section.get("enabled") else None

    def plate_view(self, src: Source) -> Any:
        """The image's :class:`~kiridashi.segmenters.plates.View` (work size, thumbnail,
        character boxes), cached by its detect key and the plates settings."""
        from kiridashi.segmenters.plates import View, view

        key = make_key("segment.view", self.versions["segment"], self.keys(src, "detect")["detect"],
                       self.plates)  # fmt: skip

        def compute() -> dict:
            outcome = dict(self._outcome)  # a partner's steps are not the current image's
            boxes = [c["box"] for c in self.detect(src)["characters"]]
            out = view(self.work_original(src), boxes, self.plates).to_dict()
            self._outcome = outcome
            return out

        value, _ = self.cache.get_or_compute(key, compute, kind="segment.view")
        return View.from_dict(value)

    def plate_evidence(self, src: Source) -> np.ndarray | None:
        """h x w float32 evidence in [-1, 1] (long side at most ``plates.side``) that each
        pixel of the source is the background its partners show (None: none usable). Both
        sides are the decoded images at work size, without denoise and CLAHE; the partners'
        boxes come from their cached views."""
        from kiridashi.segmenters.plates import plate_evidence

        if self.plates is None:
            return None
        partners = []
        for p in src.partners:  # decoded aside: the source's own decoded image stays kept
            try:
                boxes = self.plate_view(p).boxes
                partners.append((self._at_work_size(self._decode(p).rgb), boxes))
            except (kio.BadInput, OSError, Skipped) as exc:
                log.info("plate partner %s of %s left out: %s", p.rel, src.rel, exc)
            finally:
                p.release()
        own = self.work_original(src)
        boxes = [c["box"] for c in self.detect(src)["characters"]]
        return plate_evidence(own, boxes, partners, self.plates)

    def decoded(self, src: Source) -> kio.DecodedImage:
        """The source decoded (``.rgb`` HxWx3 uint8, oriented, full size; raises BadInput); the
        last one is kept, so the steps of one image decode it once."""
        if self._last_decoded[0] != src.hash:
            self._last_decoded = (src.hash, self._decode(src))
        return self._last_decoded[1]

    def _decode(self, src: Source) -> kio.DecodedImage:
        """The source decoded, within ``preprocess.max_pixels`` (raises BadInput)."""
        return kio.decode_image(src.data, int(self.cfg["preprocess"].get("max_pixels", 64_000_000)))

    def _at_work_size(self, rgb: np.ndarray) -> np.ndarray:
        """A decoded HxWx3 image at work size (``preprocess.max_side``), contiguous."""
        max_side = int(self.cfg["preprocess"].get("max_side", 0))
        return np.ascontiguousarray(resize_to_work(rgb, max_side))

    def segment_input(self, src: Source) -> np.ndarray:
        """The work-size image the segmenter sees, by ``segment.input``: ``original`` (default:
        the decoded image at work size, without denoise and CLAHE, which help the detectors but
        blur the edges the cut follows) or ``preprocessed`` (what the detectors see)."""
        mode = self.cfg["segment"].get("input", "original")
        check_segment_input(mode)
        if mode == "preprocessed":
            return self.preprocess(src)["image"]
        return self.work_original(src)

    def work_original(self, src: Source) -> np.ndarray:
        """The decoded image at work size (``preprocess.max_side``), without denoise and CLAHE:
        HxWx3 uint8 RGB, the size of the preprocessed image."""
        return self._at_work_size(self.decoded(src).rgb)

    def merge(self, src: Source) -> dict:
        """Final outputs of one image as encoded bytes (see :func:`write_outputs`)."""
        keys = self.keys(src)

        def compute() -> dict:
            pre = self.preprocess(src)
            seg = self.segment(src)
            return build_merge_result(self.decoded(src).rgb, pre, seg, self.cfg["merge"])

        return self._cached("merge", keys["merge"], compute)

    def run_image(self, src: Source) -> dict:
        """All steps for one image; returns its merge result or {"skip": reason}."""
        try:
            return self.merge(src)
        except Skipped as exc:
            return {"skip": str(exc)}
        except kio.BadInput as exc:
            return {"skip": str(exc)}
