"""Edge alpha (matte / ramp) and the thread-pool sizing used by the workers."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from kiridashi import edges


def _figure(h: int = 240, w: int = 320) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (120, 120), (50, 90), 0, 0, 360, 1, -1)
    mask[:, w - 6 :] = 1  # a piece touching the image border
    soft = cv2.GaussianBlur(mask.astype(np.float32), (9, 9), 3)
    return mask.astype(bool), soft


@pytest.mark.parametrize("alpha", ["matte", "ramp"])
def test_edge_alpha_in_the_mask_box_equals_the_full_frame_computation(alpha):
    mask, soft = _figure()
    cfg = {"mode": "soft", "alpha": alpha, "band_px": 2.0, "feather_px": 1.5}
    full = edges.matte_alpha(mask, soft, 2.0) if alpha == "matte" else edges.soft_alpha(mask, 1.5)
    np.testing.assert_array_equal(edges.edge_alpha(mask, soft, cfg), full)


def test_edge_alpha_hard_and_empty():
    mask, soft = _figure()
    hard = edges.edge_alpha(mask, soft, {"mode": "hard"})
    assert set(np.unique(hard)) == {0, 255}
    empty = np.zeros_like(mask)
    assert not edges.edge_alpha(empty, soft, {"mode": "soft", "alpha": "matte"}).any()


def test_worker_threads_numba_one_and_opencv_one_per_worker():
    code = (
        "import os, cv2\n"
        "from kiridashi.threads import limit_threads\n"
        "limit_threads(2)\n"
        "import numba\n"
        "print(os.environ['NUMBA_NUM_THREADS'], numba.get_num_threads(), cv2.getNumThreads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["1", "1", "1"]


def test_a_user_numba_thread_setting_is_kept():
    code = (
        "from kiridashi.threads import limit_threads\n"
        "limit_threads(1)\n"
        "import numba\n"
        "print(numba.get_num_threads())\n"
    )
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "2"
