"""kiridashi (切り出し): per-character cut-outs from anime / visual-novel / game-CG images."""

__version__ = "0.1.0"
