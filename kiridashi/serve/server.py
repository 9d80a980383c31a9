"""``kiridashi serve``: settings checked once, then uvicorn on the app."""

from __future__ import annotations

import logging

from kiridashi.config import ConfigError

log = logging.getLogger("kiridashi.serve")


def require_extra() -> None:
    """ConfigError (one line, exit 2) when the ``serve`` extra is not installed."""
    import importlib

    missing = []
    for module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(
            f"kiridashi serve needs the serve extra ({', '.join(missing)} missing): "
            "pip install -e '.[serve]'"
        )


def serve(
    overrides: list[str], host: str | None = None, port: int | None = None, token: str | None = None
) -> int:
    """Run the server until interrupted."""
    require_extra()
    import uvicorn

    from kiridashi.pipeline import make_runner
    from kiridashi.schema import compose_valid
    from kiridashi.serve.app import create_app
    from kiridashi.serve.settings import load_settings

    cfg = compose_valid(overrides)
    settings = load_settings(cfg, host, port, token)
    make_runner(cfg)  # start-up checks: settings, model files (one warning line each)
    app = create_app(settings, overrides)
    log.info(
        "serving on http://%s:%d/ with %d worker(s)%s; outputs in %s",
        settings.host,
        settings.port,
        settings.jobs,
        ", token required" if settings.token else "",
        settings.dir,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", lifespan="on")
    return 0
