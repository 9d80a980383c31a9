"""From cut-outs to a training set: ``kiridashi export`` and the DVC stage ``export``.

One concept per module: :mod:`.settings` (the ``export`` config section, checked once),
:mod:`.canvas` (background, size and padding of one image), :mod:`.captions` (caption template
and sidecar tag files), :mod:`.gate` (which crops are left out and why), :mod:`.dedup`
(perceptual-hash groups of near-duplicates), :mod:`.writers` (the kohya and folder layouts) and
:mod:`.dataset` (the run: inputs, cache, staging folder, ``export_report.json``).
"""
