"""Thread pools of the native libraries, sized for image-level parallelism.

The pipeline parallelises over images (``jobs`` worker processes), so the libraries' own thread
pools only add contention:

- numba (ensemble-boxes; pymatting's colour decontamination until it was replaced) runs its
  ``parallel=True`` kernels on a spinning thread pool: on the 2-core reference machine, with
  another process busy, one pymatting decontamination cost 0.36 s of CPU with the default pool
  and 0.06 s with one thread, for the same result and the same wall time.
- OpenCV's pool helps a single process (guided filter, resizes) but, with one worker process
  per core, its threads compete with the other workers.
"""

from __future__ import annotations

import os
import sys


def limit_threads(jobs: int) -> None:
    """Size the thread pools for a process that is one of ``jobs`` image workers.

    numba gets one thread (through ``NUMBA_NUM_THREADS`` before it is imported, so spawned
    workers inherit it, or ``numba.set_num_threads`` after) unless the user set
    ``NUMBA_NUM_THREADS``. OpenCV gets one thread per process when ``jobs > 1``; a single process
    keeps OpenCV's default.
    """
    if "NUMBA_NUM_THREADS" not in os.environ:
        if "numba" in sys.modules:
            sys.modules["numba"].set_num_threads(1)
        else:
            os.environ["NUMBA_NUM_THREADS"] = "1"
    if jobs > 1:
        import cv2

        cv2.setNumThreads(1)
