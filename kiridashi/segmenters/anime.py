"""The default segmenter: anime-aware GrabCut seeded by detections (no downloaded weights).

Seeds (at a reduced work size, then refined at full size):

- sure background: outside every character's box grown by ``box_margin`` (x its size), except
  below a character when the box reaches the bottom (sprites are cut by the frame);
- sure foreground: the face box core, confident face/pose keypoints and the torso column
  under the face (anime proportions: the body hangs below the head);
- probable foreground/background: the rest of the boxes.

One GrabCut models all characters together (shared colour model); the result is refined at
the image's own resolution with an edge-aware guided filter, then each foreground pixel is given
to the character whose face/box centre is nearest (in face widths), which splits touching
characters. Masks are HxW float32 in [0, 1], boxes XYXY.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from kiridashi.types import Character

log = logging.getLogger(__name__)


class AnimeGrabCut:
    def __init__(
        self,
        work_side: int = 640,
        iterations: int = 4,
        box_margin: float = 0.15,
        face_core: float = 0.6,
        torso_width_faces: float = 0.8,
        torso_height_faces: float = 2.5,
        keypoint_radius_faces: float = 0.06,
        min_keypoint_confidence: float = 0.6,
        refine_radius: int = 4,
        refine_eps: float = 0.01,
        open_bottom: bool = True,
    ):
        self.work_side = int(work_side)
        self.iterations = int(iterations)
        self.box_margin = float(box_margin)
        self.face_core = float(face_core)
        self.torso_w = float(torso_width_faces)
        self.torso_h = float(torso_height_faces)
        self.kp_radius = float(keypoint_radius_faces)
        self.kp_conf = float(min_keypoint_confidence)
        self.refine_radius = int(refine_radius)
        self.refine_eps = float(refine_eps)
        self.open_bottom = bool(open_bottom)

    # -- seeds ---------------------------------------------------------------------------
    def seed_mask(self, hw: tuple[int, int], characters: list[Character], s: float) -> np.ndarray:
        """GrabCut init mask (HxW uint8 of GC_* values) at work scale ``s``."""
        h, w = hw
        mask = np.full((h, w), cv2.GC_BGD, np.uint8)
        for ch in characters:
            x0, y0, x1, y1 = (v * s for v in ch.box)
            mx, my = self.box_margin * (x1 - x0), self.box_margin * (y1 - y0)
            bottom = h if (self.open_bottom and y1 >= h - 2) else y1 + my
            ys, ye = int(max(0, y0 - my)), int(min(h, bottom))
            xs, xe = int(max(0, x0 - mx)), int(min(w, x1 + mx))
            region = mask[ys:ye, xs:xe]
            region[region == cv2.GC_BGD] = cv2.GC_PR_BGD
        for ch in characters:
            self._foreground_seeds(mask, ch, s)
        return mask

    def _foreground_seeds(self, mask: np.ndarray, ch: Character, s: float) -> None:
        h, w = mask.shape
        if ch.face_box is None:
            x0, y0, x1, y1 = (v * s for v in ch.box)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            rx, ry = 0.15 * (x1 - x0), 0.2 * (y1 - y0)
            cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360,
                        cv2.GC_PR_FGD, -1)  # fmt: skip
            return
        fx0, fy0, fx1, fy1 = (v * s for v in ch.face_box)
        fw, fh = fx1 - fx0, fy1 - fy0
        cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
        # torso column below the face: probable foreground
        tx0, tx1 = int(cx - self.torso_w * fw / 2), int(cx + self.torso_w * fw / 2)
        ty0, ty1 = int(fy1), int(min(h, fy1 + self.torso_h * fh))
        sub = mask[max(0, ty0) : ty1, max(0, tx0) : min(w, tx1)]
        sub[sub != cv2.GC_FGD] = cv2.GC_PR_FGD
        # whole face box: probable foreground; its core: sure foreground
        sub = mask[int(max(0, fy0)) : int(fy1), int(max(0, fx0)) : int(fx1)]
        sub[sub != cv2.GC_FGD] = cv2.GC_PR_FGD
        c = self.face_core / 2
        cv2.ellipse(mask, (int(cx), int(cy)), (max(1, int(c * fw)), max(1, int(c * fh))), 0, 0, 360,
                    cv2.GC_FGD, -1)  # fmt: skip
        r = max(1, int(self.kp_radius * fw))
        for name, (x, y, *conf) in ch.keypoints.items():
            if conf and conf[0] < self.kp_conf:
                continue
            if name.startswith("face.") or name.endswith(("shoulder", "hip")):
                xi, yi = int(x * s), int(y * s)
                if 0 <= xi < w and 0 <= yi < h and mask[yi, xi] != cv2.GC_BGD:
                    cv2.circle(mask, (xi, yi), r, cv2.GC_FGD, -1)

    # -- segmentation ----------------------------------------------------------------------
    def union_soft(self, image: np.ndarray, characters: list[Character]) -> np.ndarray:
        """Soft foreground of all characters together (HxW float32, full size)."""
        h, w = image.shape[:2]
        s = min(1.0, self.work_side / max(h, w))
        small = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        init = self.seed_mask(small.shape[:2], characters, s)
        mask = init.copy()
        if (mask == cv2.GC_PR_BGD).any() and ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).any():
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
            cv2.grabCut(bgr, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
        soft = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.refine_radius > 0:
            guide = image.astype(np.float32) / 255.0
            r = max(1, int(round(self.refine_radius / max(s, 1e-6) * 0.5)))
            soft = cv2.ximgproc.guidedFilter(guide, soft, r, self.refine_eps)
        allowed = cv2.resize((init != cv2.GC_BGD).astype(np.uint8), (w, h),
                             interpolation=cv2.INTER_NEAREST)  # fmt: skip
        return np.clip(soft, 0.0, 1.0) * allowed

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

    def segment(self, image: np.ndarray, characters: list[Character], memo) -> list[np.ndarray]:
        soft = self.union_soft(image, characters)
        return [m.astype(np.float32) for m in self.split(soft, characters)]
