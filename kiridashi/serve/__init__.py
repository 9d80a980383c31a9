"""``kiridashi serve``: resident models behind an HTTP API and a web page.

The server is thin: every image goes through :class:`kiridashi.Extractor` in a pool of worker
processes that load the models once (:mod:`~kiridashi.serve.pool`), over the same config and
content-addressed cache as ``kiridashi extract`` and the DVC stages. Modules: ``settings`` (the
``serve`` config section and command-line options, checked once), ``guard`` (token, upload
limit, request metrics), ``pool`` and ``worker`` (the worker processes), ``jobs`` (folder and zip
jobs persisted on disk), ``metrics`` (Prometheus), ``app`` (the routes), ``server`` (uvicorn).
Needs the optional extra: ``pip install -e '.[serve]'``.
"""
