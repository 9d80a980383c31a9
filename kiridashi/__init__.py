"""kiridashi (切り出し): per-character cut-outs from anime / visual-novel / game-CG images."""

import os as _os

# MediaPipe / TFLite print C++ log lines on every model load; keep only real errors.
_os.environ.setdefault("GLOG_minloglevel", "2")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
