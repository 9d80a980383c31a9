"""kiridashi (切り出し): per-character cut-outs from anime / visual-novel / game-CG images.

The Python API is :class:`kiridashi.Extractor` (``Extractor(cfg).extract(image_bytes) ->
Result``); it is imported on first use, so ``import kiridashi`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["Extractor", "Result", "__version__"]


def __getattr__(name: str):
    if name in ("Extractor", "Result"):
        from kiridashi import extractor

        return getattr(extractor, name)
    raise AttributeError(f"module 'kiridashi' has no attribute {name!r}")
