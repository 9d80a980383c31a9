"""The default segmenter: region graph cut seeded by the detections (no downloaded weights).

Per image (all characters together, at a work copy whose long side is ``work_side``):

1. area of interest: every character box grown by ``box_margin``; box sides that reach the image
   border stay open, and (``open_boxes``) selfie foreground that continues past a box edge is
   let in, so a box cut too short does not cut the figure. Outside it is sure background.
2. watershed superpixels (``superpixel_px`` grid) on the area plus a background ring: their
   borders follow the line art and the flat colour regions of a drawn figure.
3. per-region foreground log-odds from (a) MediaPipe selfie-segmentation person probability
   (``selfie``), blended with kiridashi's figure net run on each character's box (``figure``:
   the same ONNX net the detector uses; trained on drawn figures, it holds bodies and hair that
   the photo-trained selfie model misses), (b) foreground/background colour histograms
   re-learned from the current labels (``colour``), (c) sure foreground at the face core,
   confident face/pose points and the core of confident pose legs (``seeds``),
   (d) a body-layout prior (``shape``), (e) line-art enclosure (``enclosure``): regions that the
   sure background cannot reach without crossing dark line art count as inside; with
   ``enclosure.border`` the image border where the selfie model sees background is also open,
   so the floor behind a figure cut by the bottom edge is not "enclosed" by it.
4. graph cut over the region adjacency graph: cutting between two regions costs their border
   length times their colour similarity (``pairwise``); repeated ``iterations`` times with
   re-learned colours. With ``colour.consensus_sigma`` the rounds run twice, the histograms
   smoothed by ``colour.sigma`` and by that, and a pixel stays foreground only where both
   cuts keep it; with ``colour.consensus_layout`` the second learns its first figure colours
   from the layout alone (sure seeds, the body prior), not from the person prior. With
   ``colour.blind_vote``, in the box of a character the selfie model is blind to, a third
   reading seeded by the net's figure alone votes and two of the three keep a pixel.
5. refinement at the image's own resolution: a pixel-level graph cut in a narrow band around the
   upscaled cut (``fullres``: local colour models, contrast-sensitive pairwise, and a bonus for
   dark line art so the boundary sits on the outer side of the outline; recovers detail lost at
   the work size), then an edge-aware guided filter (``refine``).
6. heads are never lost (``head``, :mod:`kiridashi.segmenters.heads`): a face whose core or
   fringe the cut left out gets back the face and hair closed around it by line art.

Then each foreground pixel goes to the character whose face/box centre is nearest (in face
widths), which splits touching characters. Masks are HxW float32 in [0, 1], boxes XYXY.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from kiridashi.metrics import mask_window
from kiridashi.segmenters import heads
from kiridashi.segmenters import plates as plates_mod
from kiridashi.segmenters.pockets import Pockets, share_at
from kiridashi.segmenters.regions import (
    HARD,
    ColourModel,
    RegionGraph,
    clipped_logit,
    close_gaps,
    line_contrast,
    min_cut,
    refine_band,
    region_graph,
    superpixels,
)
from kiridashi.segmenters.veto import veto_map
from kiridashi.types import Character

log = logging.getLogger(__name__)


def _section(value: dict | None, defaults: dict) -> dict:
    out = dict(defaults)
    out.update(value or {})
    return out


@dataclass
class _Rounds:
    """One crop's terms that stay fixed through the graph cut <-> colour model rounds (work px;
    per-region arrays index the regions of ``labels``)."""

    image: np.ndarray  # HxWx3 uint8 RGB
    lab: np.ndarray  # HxWx3 float32 Lab of it
    labels: np.ndarray  # HxW int32 superpixel labels
    graph: RegionGraph
    base: np.ndarray  # per-region log-odds: priors, veto, bias
    weights: np.ndarray  # pairwise weight per graph edge
    hard_bg: np.ndarray  # per-region bool
    hard_fg: np.ndarray  # per-region bool
    allowed_share: np.ndarray  # per-region share inside the allowed area
    selfie_term: np.ndarray | None  # per-region person-prior log-odds (None: no prior)
    allowed: np.ndarray  # HxW bool
    index: np.ndarray  # HxW colour histogram bin of each pixel
    pockets: Pockets | None  # the line art's enclosed pockets (None: enclosure off or fixed)
    enc_w: float
    mute_pockets: bool  # the person prior has no say in a background-coloured pocket


SELFIE = {"enabled": True, "weight": 1.0, "models": [0, 1], "combine": "max", "work_side": 512,
          "clip": 3.0, "mute_below": 0.0}  # fmt: skip
COLOUR = {"enabled": True, "weight": 1.0, "bins": 32, "sigma": 1.0, "consensus_sigma": None,
          "consensus_layout": False, "blind_vote": False, "clip": 4.0, "init_body": True,
          "init_inside_bg": False}  # fmt: skip
SEEDS = {"enabled": True, "face_core": 0.6, "keypoint_radius_faces": 0.06,
         "min_keypoint_confidence": 0.6, "leg_core": 0.0, "min_leg_confidence": 0.8,
         "leg_min_width": 0.0}  # fmt: skip
# pose segments whose core is sure foreground (``seeds.leg_core``): thighs and shins. Arms and
# the torso sides were tried too: segment_eval --chars detector, dev2 single IoU 0.890 (legs) ->
# 0.895 with arms, but dev boundary F 0.903 -> 0.901 (arms) / 0.898 (torso)
LEGS = (("left_hip", "left_knee"), ("left_knee", "left_ankle"),
        ("right_hip", "right_knee"), ("right_knee", "right_ankle"))  # fmt: skip
PAIRWISE = {"enabled": True, "weight": 2.0}
OPEN = {"enabled": False, "threshold": 0.5, "margin": 0.05, "reach": 0.4}
REFINE = {"enabled": True, "radius": 4, "eps": 0.01}
SHAPE = {"enabled": True, "weight": 1.0, "head_scale": 1.6, "torso_width_faces": 1.6,
         "column_share": 0.4}  # fmt: skip
BAND = {"enabled": True, "px": 8, "weight": 8.0}
FULLRES = {"enabled": False, "px": 4, "weight": 8.0, "max_scale": 0.9, "band_samples": 0.0,
           "prior": 0.0, "min_kept": 0.0, "sigma": None,
           "line": {"enabled": True, "weight": 1.0, "line_px": 7, "contrast": 40.0}}  # fmt: skip
FIGURE = {"enabled": False, "blend": 0.5, "net": "kiridashi.detectors.figure_net.FigureNet",
          "model_file": "figure_net.onnx", "input_side": 320,
          "margin": 0.25, "not_only": ["figure_net", "mediapipe_pose"], "blend_blind": None,
          "blind_below": 0.4, "blend_over": None,
          "over_ratio": 0.3, "veto": None, "veto_agree": 0.5, "veto_clip": 3.0,
          "veto_colours": False, "blind_fill": None}  # fmt: skip
ENCLOSURE = {"enabled": True, "weight": 1.0, "barrier": "lines", "line_px": 5, "line_contrast": 40.0,
             "canny": [50, 150], "close_px": 1,
             "scale": 1.0, "border": {"enabled": False, "max_selfie": 0.5},
             "pockets": {"enabled": False, "ratio": 1.0, "mute_selfie": False}}  # fmt: skip


def guided_filter_near(image: np.ndarray, soft: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """``cv2.ximgproc.guidedFilter`` of ``soft`` (HxW float32) guided by ``image`` (HxWx3 uint8),
    computed only in the box around ``soft > 0`` grown by ``2 * radius + 2``: farther out every
    window sees ``soft == 0``, where the filter's output is exactly 0, so the result equals the
    whole-image filter at a cost that follows the figure's size."""
    window = mask_window(soft > 0, 2 * radius + 2)
    if window is None:
        return soft
    guide = image[window].astype(np.float32) / 255.0
    out = np.zeros_like(soft)
    out[window] = cv2.ximgproc.guidedFilter(guide, np.ascontiguousarray(soft[window]), radius, eps)
    return out


class AnimeRegionCut:
    """See the module docstring; every step has its own config section with ``enabled``."""

    CONTEXT = ("models_dir",)

    def __init__(
        self,
        work_side: int = 640,
        superpixel_px: int = 6,
        box_margin: float = 0.15,
        ring: float = 0.15,
        iterations: int = 3,
        bias: float = 0.0,
        selfie: dict | None = None,
        colour: dict | None = None,
        seeds: dict | None = None,
        pairwise: dict | None = None,
        open_boxes: dict | None = None,
        refine: dict | None = None,
        enclosure: dict | None = None,
        shape: dict | None = None,
        band: dict | None = None,
        fullres: dict | None = None,
        figure: dict | None = None,
        head: dict | None = None,
        plates: dict | None = None,
        models_dir: str | None = None,
    ):
        self.work_side = int(work_side)
        self.superpixel_px = int(superpixel_px)
        self.box_margin = float(box_margin)
        self.ring = float(ring)
        self.iterations = int(iterations)
        self.bias = float(bias)
        self.selfie = _section(selfie, SELFIE)
        self.colour = _section(colour, COLOUR)
        self.seeds = _section(seeds, SEEDS)
        self.pairwise = _section(pairwise, PAIRWISE)
        self.open_boxes = _section(open_boxes, OPEN)
        self.refine = _section(refine, REFINE)
        self.enclosure = _section(enclosure, ENCLOSURE)
        self.shape = _section(shape, SHAPE)
        self.band = _section(band, BAND)
        self.fullres = _section(fullres, FULLRES)
        self.fullres["line"] = _section(self.fullres.get("line"), FULLRES["line"])
        self.figure = _section(figure, FIGURE)
        self.head = _section(head, heads.DEFAULTS)
        self.plates = plates_mod.settings(plates)
        self.models_dir = models_dir
        self._selfie_model = None
        self._figure_net = None

    # -- priors ------------------------------------------------------------------------------
    def person_probability(self, image: np.ndarray) -> np.ndarray | None:
        """Selfie person probability (HxW float32 at ``image`` size) or None when disabled."""
        if not self.selfie["enabled"]:
            return None
        if self._selfie_model is None:
            from kiridashi.detectors.mediapipe_selfie import SelfieForeground

            self._selfie_model = SelfieForeground(
                "selfie", list(self.selfie["models"]), int(self.selfie["work_side"])
            )
        maps = self._selfie_model.probability(image)
        prob = maps.max(0) if self.selfie["combine"] == "max" else maps.mean(0)
        h, w = image.shape[:2]
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)

    def figure_probability(
        self, image: np.ndarray, characters: list[Character], s: float, hw: tuple[int, int]
    ) -> np.ndarray | None:
        """HxW float32 (``hw``, the work size) figure probability from the net of
        ``figure.net`` (kiridashi's mask net by default, or the figure net), or None when
        disabled. The net sees each character's box grown by ``figure.margin`` on
        each side, cut from ``image`` (HxWx3 RGB at ``1 / s`` x the work size), so a small figure
        fills its input as the figures it was trained on did; overlapping crops keep the max.
        0 outside every crop. A character found only by the detectors in ``figure.not_only``
        (the figure net itself, pose) gets none: the net does not vouch for its own boxes."""
        if not self.figure["enabled"]:
            return None
        if self._figure_net is None:
            # built like a detector: once per process, a missing or invalid model file is one
            # warning line (kiridashi.detectors.base.build) and the cut goes on without the prior
            from kiridashi.detectors.base import build

            entry = {"_target_": str(self.figure["net"]),
                     "model_file": str(self.figure["model_file"]),
                     "input_side": int(self.figure["input_side"])}  # fmt: skip
            context = {"models_dir": self.models_dir} if self.models_dir is not None else {}
            self._figure_net = build("segment.figure", entry, **context) or False
        if self._figure_net is False:
            return None
        h, w = hw
        H, W = image.shape[:2]
        out = np.zeros((h, w), np.float32)
        m = float(self.figure["margin"])
        for ch in characters:
            if not self._net_sees(ch):
                continue
            x0, y0, x1, y1 = ch.box
            mx, my = m * (x1 - x0), m * (y1 - y0)
            X0, Y0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
            X1, Y1 = int(min(W, np.ceil(x1 + mx))), int(min(H, np.ceil(y1 + my)))
            wx0, wy0 = int(round(X0 * s)), int(round(Y0 * s))
            wx1, wy1 = min(w, int(round(X1 * s))), min(h, int(round(Y1 * s)))
            if X1 - X0 < 8 or Y1 - Y0 < 8 or wx1 <= wx0 or wy1 <= wy0:
                continue
            crop = np.ascontiguousarray(image[Y0:Y1, X0:X1])
            prob = self._figure_net.probability(crop)
            prob = cv2.resize(prob, (wx1 - wx0, wy1 - wy0), interpolation=cv2.INTER_AREA)
            np.maximum(out[wy0:wy1, wx0:wx1], prob, out=out[wy0:wy1, wx0:wx1])
        return out

    def _net_sees(self, ch: Character) -> bool:
        """Whether the learned prior runs on ``ch``: not when only detectors of
        ``figure.not_only`` found it (the net does not vouch for its own boxes)."""
        return not set(ch.detectors) <= set(self.figure["not_only"])

    def _blend_map(
        self,
        selfie: np.ndarray | None,
        fig: np.ndarray,
        characters: list[Character],
        s: float,
        blind_area: np.ndarray | None = None,
    ) -> np.ndarray | float:
        """The figure net's share of the person prior (HxW, work size, or one number):
        ``figure.blend``, raised to

        - ``figure.blend_blind`` in the box of a character where the selfie model is blind to
          the figure the net sees (mean selfie probability below ``figure.blind_below`` where
          the net says figure), and
        - ``figure.blend_over`` in the box grown by ``box_margin`` (the cut's area) of a
          character where the selfie model overreaches: its foreground (>= 0.5) where the net
          sees no figure (< 0.2) covers more than ``figure.over_ratio`` x the net's figure
          (>= 0.5) there. The photo-trained selfie model takes tree trunks, dark doorways and
          furniture beside a drawn figure for a person; the anime-trained net does not.

        ``blind_area``: :meth:`_blind_area` of these maps, when already computed."""
        b = float(self.figure["blend"])
        blind, over = self.figure.get("blend_blind"), self.figure.get("blend_over")
        if selfie is None or (blind is None and over is None):
            return b
        out = np.full(fig.shape, b, np.float32)
        if blind is not None:
            if blind_area is None:
                blind_area = self._blind_area(selfie, fig, characters, s)
            out[blind_area] = np.maximum(out[blind_area], float(blind))
        if over is None:
            return out
        h, w = fig.shape
        for ch in characters:
            if (fig[self._work_box((h, w), ch.box, s)] >= 0.5).sum() < 16:
                continue
            area = self._grown_box((h, w), ch.box, s, self.box_margin)  # the cut's area
            figure = fig[area] >= 0.5
            extra = (selfie[area] >= 0.5) & (fig[area] < 0.2)
            if extra.sum() > float(self.figure["over_ratio"]) * figure.sum():
                out[area] = np.maximum(out[area], float(over))
        return out

    @staticmethod
    def _work_box(hw: tuple[int, int], box: tuple[float, ...], s: float) -> tuple[slice, slice]:
        """(rows, cols) of the XYXY ``box`` (image px) at the work size (x ``s``), clipped."""
        h, w = hw
        x0, y0, x1, y1 = (v * s for v in box)
        return (slice(max(0, round(y0)), min(h, round(y1))),
                slice(max(0, round(x0)), min(w, round(x1))))  # fmt: skip

    def _blind_area(
        self, selfie: np.ndarray, fig: np.ndarray, characters: list[Character], s: float
    ) -> np.ndarray:
        """HxW bool (work size): the boxes of the characters the selfie model is blind to
        (:meth:`_selfie_blind`)."""
        out = np.zeros(fig.shape, bool)
        for ch in characters:
            if self._selfie_blind(selfie, fig, ch, s):
                out[self._work_box(fig.shape, ch.box, s)] = True
        return out

    def _selfie_blind(self, selfie: np.ndarray, fig: np.ndarray, ch: Character, s: float) -> bool:
        """Whether the selfie model is blind to the figure the net sees in ``ch``'s box: its
        mean probability where the net says figure (>= 0.5; at least 16 px) is below
        ``figure.blind_below``. HxW work-size maps."""
        box = self._work_box(fig.shape, ch.box, s)
        seen = fig[box] >= 0.5
        return bool(
            seen.sum() >= 16 and selfie[box][seen].mean() < float(self.figure["blind_below"])
        )

    def _fill_blind_holes(
        self, selfie: np.ndarray | None, fig: np.ndarray, characters: list[Character], s: float
    ) -> np.ndarray:
        """``fig`` (HxW, work size) with the holes of the net's figure (>= 0.5) raised to
        ``figure.blind_fill`` in the area (box grown by ``box_margin``) of each character the
        selfie model is blind to. There the net is the only shape prior, and an enclosed hole
        in its figure is more often a white shirt it did not recognise than background: at 0.5
        colour and line art decide. A copy; ``fig`` itself when off."""
        fill = self.figure.get("blind_fill")
        if fill is None or selfie is None:
            return fig
        out = fig.copy()
        for ch in characters:
            if not self._selfie_blind(selfie, fig, ch, s):
                continue
            area = self._grown_box(fig.shape, ch.box, s, self.box_margin)
            holes = ndimage.binary_fill_holes(fig[area] >= 0.5) & (fig[area] < 0.5)
            out[area] = np.where(holes, np.maximum(out[area], float(fill)), out[area])
        return out

    def _veto(
        self,
        selfie: np.ndarray | None,
        fig: np.ndarray | None,
        characters: list[Character],
        s: float,
    ) -> np.ndarray | None:
        """HxW float32 (work size) log-odds <= 0: ``figure.veto`` x the learned prior's (the
        mask net's) background evidence for the characters where the net and the selfie model
        agree (IoU of their foregrounds in the box >= ``figure.veto_agree``), in each one's box
        grown by ``box_margin``; None when off or a map is missing
        (:mod:`kiridashi.segmenters.veto`)."""
        weight = self.figure.get("veto")
        if not weight or selfie is None or fig is None:
            return None
        hw = fig.shape
        chars = [(self._grown_box(hw, ch.box, s, 0.0), self._grown_box(hw, ch.box, s, self.box_margin),
                  self._net_sees(ch)) for ch in characters]  # fmt: skip
        out = veto_map(fig, selfie, chars, float(self.figure["veto_agree"]),
                       float(self.figure["veto_clip"]))  # fmt: skip
        return float(weight) * out

    def allowed_area(
        self, hw: tuple[int, int], characters: list[Character], s: float, prob: np.ndarray | None
    ) -> np.ndarray:
        """HxW bool: where foreground may be (grown boxes, open borders, continuing selfie fg)."""
        h, w = hw
        allowed = self._grown_boxes(hw, characters, s, self.box_margin)
        core = self._grown_boxes(hw, characters, s, 0.0)
        if prob is not None and self.open_boxes["enabled"]:
            fg = (prob >= float(self.open_boxes["threshold"])).astype(np.uint8)
            n, comp = cv2.connectedComponents(fg, connectivity=8)
            touching = np.unique(comp[core & (fg > 0)])
            extra = np.isin(comp, touching[touching > 0])
            r = max(1, int(float(self.open_boxes["margin"]) * max(h, w)))
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            reach = self._grown_boxes(hw, characters, s, float(self.open_boxes["reach"]))
            allowed |= cv2.dilate(extra.astype(np.uint8), k).astype(bool) & reach
        return allowed

    @staticmethod
    def _grown_box(
        hw: tuple[int, int], box: tuple[float, ...], s: float, margin: float
    ) -> tuple[slice, slice]:
        """(rows, cols) of the XYXY ``box`` (x ``s``) grown by ``margin`` x its size, clipped to
        an image of ``hw``."""
        h, w = hw
        x0, y0, x1, y1 = (v * s for v in box)
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        return (slice(int(max(0, y0 - my)), int(min(h, np.ceil(y1 + my)))),
                slice(int(max(0, x0 - mx)), int(min(w, np.ceil(x1 + mx)))))  # fmt: skip

    @classmethod
    def _grown_boxes(
        cls, hw: tuple[int, int], characters: list[Character], s: float, margin: float
    ) -> np.ndarray:
        """HxW bool union of the character boxes (x ``s``) grown by ``margin`` x their size."""
        out = np.zeros(hw, bool)
        for ch in characters:
            out[cls._grown_box(hw, ch.box, s, margin)] = True
        return out

    def body_prior(self, hw: tuple[int, int], characters: list[Character], s: float):
        """HxW float32 in {0, 1}: where an anime body usually is (head around the face, torso
        column below it to the box bottom; the box's central column without a face)."""
        h, w = hw
        prior = np.zeros((h, w), np.uint8)
        cfg = self.shape
        for ch in characters:
            x0, y0, x1, y1 = (v * s for v in ch.box)
            if ch.face_box is None:
                half = float(cfg["column_share"]) * (x1 - x0) / 2
                cx = (x0 + x1) / 2
                prior[int(max(0, y0)) : int(y1), int(max(0, cx - half)) : int(cx + half)] = 1
                continue
            fx0, fy0, fx1, fy1 = (v * s for v in ch.face_box)
            fw, fh = fx1 - fx0, fy1 - fy0
            cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
            k = float(cfg["head_scale"]) / 2
            cv2.ellipse(prior, (int(cx), int(cy)), (int(k * fw), int(k * fh)), 0, 0, 360, 1, -1)
            half = float(cfg["torso_width_faces"]) * fw / 2
            prior[int(cy) : int(max(cy, y1)), int(max(0, cx - half)) : int(cx + half)] = 1
        return prior.astype(np.float32)

    def sure_foreground(self, hw: tuple[int, int], characters: list[Character], s: float):
        """HxW bool: face cores and confident face/shoulder/hip points (seeds)."""
        h, w = hw
        sure = np.zeros((h, w), np.uint8)
        if not self.seeds["enabled"]:
            return sure.astype(bool)
        for ch in characters:
            if ch.face_box is None:
                continue
            fx0, fy0, fx1, fy1 = (v * s for v in ch.face_box)
            fw, fh = fx1 - fx0, fy1 - fy0
            c = float(self.seeds["face_core"]) / 2
            centre = (int((fx0 + fx1) / 2), int((fy0 + fy1) / 2))
            cv2.ellipse(sure, centre, (max(1, int(c * fw)), max(1, int(c * fh))), 0, 0, 360, 1, -1)
            r = max(1, int(float(self.seeds["keypoint_radius_faces"]) * fw))
            for name, (x, y, *conf) in ch.keypoints.items():
                if conf and conf[0] < float(self.seeds["min_keypoint_confidence"]):
                    continue
                if name.startswith("face.") or name.endswith(("shoulder", "hip")):
                    cv2.circle(sure, (int(x * s), int(y * s)), r, 1, -1)
        if float(self.seeds["leg_core"]) > 0:
            for ch in characters:
                self._draw_legs(sure, ch, s)
        return sure.astype(bool)

    def _draw_legs(self, sure: np.ndarray, ch: Character, s: float) -> None:
        """Draw (in place, value 1) the core of each confident pose leg segment of ``ch`` (both
        joints >= ``seeds.min_leg_confidence`` and inside its box): a line ``seeds.leg_core`` x
        the shoulder width thick at the work scale ``s``, and at least ``seeds.leg_min_width``
        superpixels. Legs on a floor of their own colour (grey trousers on pavement) are
        otherwise lost to the colour model."""
        pts = {}
        x0, y0, x1, y1 = ch.box
        for name, (x, y, *conf) in ch.keypoints.items():
            if not name.startswith("pose.") or (
                conf and conf[0] < float(self.seeds["min_leg_confidence"])
            ):
                continue
            if x0 <= x <= x1 and y0 <= y <= y1:
                pts[name[5:]] = (x * s, y * s)
        if "left_shoulder" not in pts or "right_shoulder" not in pts:
            return
        (ax, ay), (bx, by) = pts["left_shoulder"], pts["right_shoulder"]
        width = float(self.seeds["leg_core"]) * np.hypot(ax - bx, ay - by)
        # the cut holds a superpixel more than half covered by seeds: a line thinner than one
        # (a small figure's leg) would hold none
        width = max(width, float(self.seeds["leg_min_width"]) * self.superpixel_px)
        width = max(1, int(round(width)))
        for a, b in LEGS:
            if a in pts and b in pts:
                p, q = (tuple(int(round(v)) for v in pts[k]) for k in (a, b))
                cv2.line(sure, p, q, 1, width)

    def enclosed(self, image: np.ndarray, outside: np.ndarray) -> np.ndarray:
        """HxW bool: pixels that ``outside`` (HxW bool, sure background) cannot reach without
        crossing a barrier (dark line art or colour edges) of ``image`` (HxWx3 RGB)."""
        return self._enclosed(image, outside)[0]

    def _enclosed(self, image: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(HxW bool enclosed, HxW int32 component of the barrier-free space, 0 = barrier)."""
        cfg = self.enclosure
        if cfg["barrier"] == "edges":
            lo, hi = cfg["canny"]
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            barrier = cv2.Canny(grey, float(lo), float(hi)) > 0
        else:
            barrier = line_contrast(image, int(cfg["line_px"])) >= float(cfg["line_contrast"])
        barrier = close_gaps(barrier, int(cfg["close_px"]))
        free = (~barrier).astype(np.uint8)
        _, comp = cv2.connectedComponents(free, connectivity=4)
        reached = np.unique(comp[outside & (free > 0)])
        return ~np.isin(comp, reached[reached > 0]), comp

    # -- segmentation ----------------------------------------------------------------------
    def union_mask(self, small: np.ndarray, characters: list[Character], s: float) -> np.ndarray:
        """HxW bool foreground of all characters at the work size of ``small`` (HxWx3 RGB)."""
        return self._union(small, characters, s)[0]

    def _union(
        self,
        small: np.ndarray,
        characters: list[Character],
        s: float,
        image: np.ndarray | None = None,
        plate: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(HxW bool foreground, HxW bool allowed area) at the work size of ``small``;
        ``image``: the full-size image ``small`` was made from (the line-art enclosure runs at
        ``enclosure.scale`` x the work size, at most at its size); ``plate``: the background
        plate's evidence at ``image``'s size (:func:`kiridashi.segmenters.plates.evidence`)."""
        h, w = small.shape[:2]
        prob = self.person_probability(small)
        fig = self.figure_probability(image if image is not None else small, characters,
                                      s if image is not None else 1.0, (h, w))  # fmt: skip
        veto = self._veto(prob, fig, characters, s)
        if plate is not None and self.plates["enabled"]:
            # the plate's say, in log-odds, joins the learned prior's veto: where the image is
            # the background another image shows, no figure colour is learned either
            seen = float(self.plates["weight"]) * cv2.resize(
                plate, (w, h), interpolation=cv2.INTER_AREA
            )
            veto = seen if veto is None else veto + seen
        net, blind = fig, None  # the net's own figure, and where the selfie model is blind
        if fig is not None and prob is not None:
            blind = self._blind_area(prob, fig, characters, s)
        if fig is not None:  # the person prior: selfie (or, without it, 0.5) and figure blended
            b = self._blend_map(prob, fig, characters, s, blind)
            fig = self._fill_blind_holes(prob, fig, characters, s)
            prob = (1.0 - b) * (0.5 if prob is None else prob) + b * fig
        allowed = self.allowed_area((h, w), characters, s, prob)
        sure = self.sure_foreground((h, w), characters, s) & allowed
        body = self.body_prior((h, w), characters, s) if self.shape["enabled"] else None
        ys, xs = np.nonzero(allowed)
        if ys.size == 0:
            return allowed, allowed
        ring = int(self.ring * max(ys.max() - ys.min(), xs.max() - xs.min())) + 2
        y0, y1 = max(0, ys.min() - ring), min(h, ys.max() + 1 + ring)
        x0, x1 = max(0, xs.min() - ring), min(w, xs.max() + 1 + ring)
        crop = np.ascontiguousarray(small[y0:y1, x0:x1])
        allowed_c, sure_c = allowed[y0:y1, x0:x1], sure[y0:y1, x0:x1]
        prob_c = prob[y0:y1, x0:x1] if prob is not None else None
        body_c = body[y0:y1, x0:x1] if body is not None else None
        edge = np.zeros(crop.shape[:2], bool)  # crop pixels on the image's own border
        edge[0, :], edge[-1, :] = y0 == 0, y1 == h
        edge[:, 0] |= x0 == 0
        edge[:, -1] |= x1 == w
        fine = None
        scale = float(self.enclosure["scale"])
        if image is not None and scale > 1.0 and self.enclosure["enabled"]:
            f = min(scale, 1.0 / s)  # enclosure px per work px
            if f > 1.0:
                fy0, fy1 = round(y0 / s), min(image.shape[0], round(y1 / s))
                fx0, fx1 = round(x0 / s), min(image.shape[1], round(x1 / s))
                size = (round((x1 - x0) * f), round((y1 - y0) * f))
                fine = cv2.resize(image[fy0:fy1, fx0:fx1], size, interpolation=cv2.INTER_AREA)
        veto_c = veto[y0:y1, x0:x1] if veto is not None else None
        vote = None  # where the selfie model is blind, a third colour reading votes
        if self.colour.get("blind_vote") and blind is not None and blind[y0:y1, x0:x1].any():
            vote = (net[y0:y1, x0:x1], blind[y0:y1, x0:x1])
        fg = self._cut(crop, allowed_c, sure_c, prob_c, body_c, edge, fine, veto_c, vote)
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = fg
        return out, allowed

    def _cut(
        self,
        image: np.ndarray,
        allowed: np.ndarray,
        sure: np.ndarray,
        prob: np.ndarray | None,
        body: np.ndarray | None,
        edge: np.ndarray | None = None,
        fine: np.ndarray | None = None,
        veto: np.ndarray | None = None,
        vote: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Graph cut of one crop (HxWx3 RGB, HxW bool masks, HxW prob or None) -> HxW bool.

        ``edge`` (HxW bool): crop pixels on the image's own border. ``fine``: the crop at a
        higher resolution (h'xw'x3 RGB) where the line-art enclosure is traced (thin outlines
        that blur open at the work size stay closed). ``veto`` (HxW float, <= 0): the learned
        prior's background log-odds, added to every round (:mod:`kiridashi.segmenters.veto`).
        ``vote`` (HxW float net figure probability, HxW bool area): with the consensus, in the
        area (the boxes of characters the selfie model is blind to) a third reading, its first
        figure colours from the net's figure and the sure seeds, votes, and two of the three
        readings keep a pixel (``colour.blind_vote``)."""
        labels = superpixels(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), self.superpixel_px)
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float32)
        graph = region_graph(labels, lab)
        allowed_share = graph.mean(labels, allowed.astype(np.float64))
        sure_share = graph.mean(labels, sure.astype(np.float64))
        base = np.full(graph.n, self.bias)
        pockets = {**ENCLOSURE["pockets"], **(self.enclosure.get("pockets") or {})}
        pockets["enabled"] = bool(pockets["enabled"] and self.enclosure["enabled"])
        selfie_term, inside, comp, enc_w = None, None, None, 0.0
        if prob is not None:
            logit = clipped_logit(prob, float(self.selfie["clip"]))
            selfie_term = float(self.selfie["weight"]) * graph.mean(labels, logit)
            base += selfie_term
        if body is not None:
            base += float(self.shape["weight"]) * graph.mean(labels, body)
        if veto is not None:
            base += graph.mean(labels, veto.astype(np.float64))
        if self.enclosure["enabled"]:
            outside = ~allowed
            border = {**ENCLOSURE["border"], **(self.enclosure.get("border") or {})}
            if edge is not None and prob is not None and border["enabled"]:
                # the image border is open: where the selfie model sees background there, the
                # background behind a figure cut by the border is reachable through it
                outside = outside | (edge & (prob < float(border["max_selfie"])))
            if fine is not None:
                up = cv2.resize(outside.astype(np.uint8), fine.shape[1::-1],
                                interpolation=cv2.INTER_NEAREST) > 0  # fmt: skip
                inside, comp = self._enclosed(fine, up)
            else:
                inside, comp = self._enclosed(image, outside)
            enc_w = float(self.enclosure["weight"])
            if not pockets["enabled"]:
                base += enc_w * (2 * graph.mean(labels, share_at(inside, labels)) - 1)
        weights = np.zeros(len(graph.edges))
        if self.pairwise["enabled"]:
            diff = graph.colour[graph.edges[:, 0]] - graph.colour[graph.edges[:, 1]]
            d2 = (diff**2).sum(1)
            beta = 1.0 / (2.0 * max(float(np.average(d2, weights=graph.border)), 1e-6))
            weights = float(self.pairwise["weight"]) * graph.border * np.exp(-beta * d2)
        hard_bg = allowed_share < 0.5
        hard_fg = (sure_share > 0.5) & ~hard_bg
        # the layout's figure: sure seeds and the body prior
        layout = sure.astype(np.float64)
        if body is not None and self.colour["init_body"]:
            layout = np.maximum(layout, body * allowed)
        # first colour model: selfie probability (or the allowed area) vs the outside ring
        fg_w = (prob if prob is not None else np.full(allowed.shape, 0.5)) * allowed
        fg_w = np.maximum(fg_w, sure)
        if veto is not None and self.figure.get("veto_colours"):
            # where the trusted net says background (log-odds <= -1: p < 0.27), the first
            # colour model takes no foreground samples (a lamp beside the figure)
            fg_w = np.where(veto <= -1.0, np.minimum(fg_w, sure), fg_w)
        fg_w = np.maximum(fg_w, layout)
        bg_w = (~allowed).astype(np.float64)
        if prob is not None and self.colour["init_inside_bg"]:
            bg_w = bg_w + (1 - prob) * allowed
        index = ColourModel(int(self.colour["bins"])).index(image)
        enclosed = None
        if pockets["enabled"]:
            enclosed = Pockets(inside, comp, labels, graph, float(pockets["ratio"]))
        state = _Rounds(image, lab, labels, graph, base, weights, hard_bg, hard_fg, allowed_share,
                        selfie_term, allowed, index, enclosed, enc_w,
                        bool(pockets["mute_selfie"]))  # fmt: skip
        fg = self._colour_rounds(state, float(self.colour["sigma"]), fg_w, bg_w)
        consensus = self.colour.get("consensus_sigma")
        if consensus is not None and self.colour["enabled"]:
            # a second reading of the colours, smoothed less: a pixel stays figure only where
            # both cuts keep it (a region that one density estimate lets the first samples
            # pull in - dark floor between dark trouser legs - the other often does not)
            first = fg_w
            if self.colour.get("consensus_layout") and layout.any():
                # ... and its first figure colours come from the layout alone (sure seeds, the
                # body prior), not from the person prior: a poster or a wall strip that the
                # blurry priors take in teaches it no figure colour
                first = layout
            second = self._colour_rounds(state, float(consensus), first, bg_w)
            if vote is None:
                return fg & second
            # where the selfie model is blind to a character, the blended prior is mostly the
            # net's, weakened: the readings err by leaving parts out (a held white sign), so a
            # third reading seeded by the net alone votes and two of the three keep a pixel
            net, area = vote
            third = self._colour_rounds(
                state, float(consensus), np.maximum(net * allowed, sure), bg_w
            )
            two = (fg & second) | (fg & third) | (second & third)
            fg = np.where(area, two, fg & second)
        return fg

    def _colour_rounds(
        self, r: _Rounds, sigma: float, fg_w: np.ndarray, bg_w: np.ndarray
    ) -> np.ndarray:
        """HxW bool: ``iterations`` rounds of graph cut <-> colour model (histograms smoothed by
        ``sigma`` bins) from the first samples ``fg_w`` / ``bg_w`` (HxW float weights), then
        the work-size band cut."""
        colour = ColourModel(int(self.colour["bins"]), sigma)
        fg_regions = r.allowed_share >= 0.5
        for _ in range(max(1, self.iterations)):
            unary = r.base.copy()
            if self.colour["enabled"]:
                colour.fit(r.image, fg_w, bg_w, r.index)
                clip = float(self.colour["clip"])
                ratio = np.clip(colour.log_ratio(r.image, r.index), -clip, clip).astype(np.float64)
                region_ratio = r.graph.mean(r.labels, ratio)
                unary += float(self.colour["weight"]) * region_ratio
                mute = float(self.selfie["mute_below"])
                if r.selfie_term is not None and mute > 0:
                    unary -= (region_ratio < -mute) * np.maximum(r.selfie_term, 0)
            if r.pockets is not None:
                # enclosed pockets whose colour is background-like are not held inside
                held, pocket = r.pockets.shares(ratio if self.colour["enabled"] else None)
                if self.colour["enabled"] and r.selfie_term is not None and r.mute_pockets:
                    # the blurry selfie map fills gaps between arms and body: it has no say
                    # in an enclosed pocket of background colour
                    unary -= pocket * np.maximum(r.selfie_term, 0)
                unary += r.enc_w * (2 * held - 1)
            unary *= r.graph.area
            unary[r.hard_bg] = -HARD
            unary[r.hard_fg] = HARD
            fg_regions = min_cut(unary, r.graph.edges, r.weights)
            fg_px = fg_regions[r.labels]
            fg_w, bg_w = fg_px.astype(np.float64), (~fg_px).astype(np.float64)
            if not self.colour["enabled"]:
                break
        fg = fg_regions[r.labels]
        if self.band["enabled"]:
            model = ColourModel(int(self.colour["bins"]), sigma)
            fg = refine_band(r.image, fg, r.allowed, int(self.band["px"]), float(self.band["weight"]),
                             model, float(self.colour["clip"]), bins=r.index, lab=r.lab)  # fmt: skip
        return fg

    def union_soft(
        self, image: np.ndarray, characters: list[Character], plate: np.ndarray | None = None
    ) -> np.ndarray:
        """Soft foreground of all characters together (HxW float32, ``image`` size); ``plate``:
        HxW float32 background-plate evidence in [-1, 1] or None."""
        h, w = image.shape[:2]
        s = min(1.0, self.work_side / max(h, w))
        small = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        fg, allowed = self._union(small, characters, s, image, plate)
        soft = cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        if self.fullres["enabled"] and s < float(self.fullres["max_scale"]):
            allowed = cv2.resize(allowed.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            coarse = soft >= 0.5
            seen = None  # the plate's say at full resolution, in the band cut too
            if plate is not None and self.plates["enabled"] and self.plates["band_weight"]:
                seen = float(self.plates["band_weight"]) * cv2.resize(
                    plate, (w, h), interpolation=cv2.INTER_LINEAR
                )
            fine = self.refine_full(image, coarse, allowed > 0, seen)
            soft = self.keep_coarse(coarse, fine, characters).astype(np.float32)
        if self.refine["enabled"] and int(self.refine["radius"]) > 0:
            r = max(1, int(round(int(self.refine["radius"]) / max(s, 1e-6) * 0.5)))
            soft = guided_filter_near(image, soft, r, float(self.refine["eps"]))
        if self.head["enabled"]:  # heads are never lost (kiridashi.segmenters.heads)
            soft = np.maximum(soft, heads.head_mask(image, characters, self.head, soft >= 0.5))
        return np.clip(soft, 0.0, 1.0)

    def line_art(self, image: np.ndarray) -> np.ndarray:
        """HxW float32 in [0, 1]: dark line art of ``image`` (HxWx3 RGB) by black-hat contrast
        (0 below ``line.contrast`` / 2, 1 from ``line.contrast`` up)."""
        cfg = self.fullres["line"]
        blackhat = line_contrast(image, int(cfg["line_px"])).astype(np.float32)
        c = float(cfg["contrast"])
        return np.clip((blackhat - c / 2) / (c / 2), 0.0, 1.0)

    def keep_coarse(
        self, coarse: np.ndarray, fine: np.ndarray, characters: list[Character]
    ) -> np.ndarray:
        """``fine`` (HxW bool, the full-resolution cut), except in the box of a character where
        it keeps less than ``fullres.min_kept`` of ``coarse`` (HxW bool, the upscaled region
        cut): there the coarse cut stays. The band is ``fullres.px`` wide on each side, so a
        figure thinner than two bands (a small, far figure) lies wholly in it, and where its
        colours are the background's (a dark suit on dark pavement) the band cut removes all
        of it."""
        keep = float(self.fullres["min_kept"])
        if keep <= 0:
            return fine
        out = fine.copy()
        h, w = coarse.shape
        for ch in characters:
            x0, y0, x1, y1 = (int(round(v)) for v in ch.box)
            box = (slice(max(0, y0), min(h, y1)), slice(max(0, x0), min(w, x1)))
            if fine[box].sum() < keep * coarse[box].sum():
                out[box] |= coarse[box]
        return out

    def refine_full(
        self,
        image: np.ndarray,
        fg: np.ndarray,
        allowed: np.ndarray,
        seen: np.ndarray | None = None,
    ) -> np.ndarray:
        """Pixel graph cut at the image's own resolution in a ``fullres.px`` band around ``fg``.

        image: HxWx3 uint8 RGB; fg, allowed: HxW bool (the upscaled cut and foreground limit);
        seen: HxW float log-odds added per pixel (the background plate's) or None.
        Works on the crop around the band only. Returns HxW bool.
        """
        cfg = self.fullres
        px = int(cfg["px"])
        window = mask_window(fg, 2 * px + 2)
        if window is None or px <= 0:
            return fg
        crop = np.ascontiguousarray(image[window])
        extra = None
        if cfg["line"]["enabled"]:
            extra = float(cfg["line"]["weight"]) * self.line_art(crop)
        if float(cfg["prior"]) > 0:  # keep near the coarse cut: +-prior at the band's edges
            f8 = fg[window].astype(np.uint8)
            inside = cv2.distanceTransform(f8, cv2.DIST_L2, 3)
            outside = cv2.distanceTransform(1 - f8, cv2.DIST_L2, 3)
            signed = np.clip((inside - outside) / px, -1.0, 1.0) * float(cfg["prior"])
            extra = signed if extra is None else extra + signed
        if seen is not None:
            extra = seen[window] if extra is None else extra + seen[window]
        sigma = cfg["sigma"] if cfg["sigma"] is not None else self.colour["sigma"]
        model = ColourModel(int(self.colour["bins"]), float(sigma))
        out = fg.copy()
        out[window] = refine_band(crop, fg[window], allowed[window], px, float(cfg["weight"]),
                                  model, float(self.colour["clip"]), extra,
                                  float(cfg["band_samples"]))  # fmt: skip
        return out

    @staticmethod
    def split(soft: np.ndarray, characters: list[Character]) -> list[np.ndarray]:
        """Give each pixel of the union to the nearest character (distance in face widths)."""
        if len(characters) == 1:
            return [soft]
        h, w = soft.shape
        xs = np.arange(w, dtype=np.float32)[None, :]
        ys = np.arange(h, dtype=np.float32)[:, None]
        costs = []
        for ch in characters:
            if ch.face_box is not None:
                fx0, fy0, fx1, fy1 = ch.face_box
                unit = max(1.0, fx1 - fx0)
                cx, top = (fx0 + fx1) / 2, fy0
            else:
                x0, y0, x1, y1 = ch.box
                unit = max(1.0, (x1 - x0) / 4)
                cx, top = (x0 + x1) / 2, y0
            # horizontal distance dominates (bodies hang below faces); above the head costs more
            dy = np.maximum(0.0, top - ys) * 2.0
            costs.append((np.abs(xs - cx) + dy) / unit)
        owner = np.argmin(np.stack(np.broadcast_arrays(*costs)), axis=0)
        return [soft * (owner == k) for k in range(len(characters))]

    def segment(
        self,
        image: np.ndarray,
        characters: list[Character],
        memo: Any,
        plate: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        soft = self.union_soft(image, characters, plate)
        return [m.astype(np.float32) for m in self.split(soft, characters)]
