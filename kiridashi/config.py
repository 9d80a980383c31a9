"""Configuration: Hydra composition of ``conf/`` (the source of truth) and ``params.yaml`` access.

``params.yaml`` is ``conf/`` composed with no overrides (``dvc exp run`` writes it the same way);
a test keeps the two equal. Stage entry points read only their own section of ``params.yaml``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import yaml

from kiridashi.cache import REPO_ROOT, find_repo_root, main_repo_root
from kiridashi.cache_remote import url_problem

CONF_DIR = REPO_ROOT / "conf"
STAGE_SECTIONS = ("preprocess", "detect", "segment", "merge", "evaluate", "export")


def compose(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The composed config as a plain dict (Hydra ``compose`` with ``overrides``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


class ConfigError(ValueError):
    """A setting that every image depends on is invalid: the run stops once with this line."""


DETECT_VIEWS = ("preprocessed", "original")  # images the detectors can search
SEGMENT_INPUTS = ("original", "preprocessed")  # images the segmenter can cut


def check_segment_input(mode: Any) -> None:
    """Raise ConfigError unless ``mode`` is a valid ``segment.input``."""
    if mode not in SEGMENT_INPUTS:
        raise ConfigError(f"segment.input must be one of {', '.join(SEGMENT_INPUTS)}, not {mode!r}")


def check_settings(cfg: dict[str, Any]) -> None:
    """Raise ConfigError for a value that would fail on every image alike (checked once at
    start-up rather than found image by image)."""
    check_segment_input((cfg.get("segment") or {}).get("input", "original"))
    remote = (cfg.get("cache") or {}).get("remote")
    if remote is not None and (problem := url_problem(remote)):
        raise ConfigError(f"cache.remote={remote}: {problem}")
    detect = cfg.get("detect") or {}
    checks = [("detect.views", detect.get("views"))] + [
        (f"detect.detectors.{name}.views", entry.get("views"))
        for name, entry in (detect.get("detectors") or {}).items()
        if isinstance(entry, dict)
    ]
    for key, views in checks:
        if unknown := [v for v in views or [] if v not in DETECT_VIEWS]:
            raise ConfigError(
                f"{key}: unknown view {unknown[0]!r} (known: {', '.join(DETECT_VIEWS)})"
            )


def dump_params(cfg: dict, path: Path) -> None:
    from kiridashi.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


# libyaml's safe loader when PyYAML was built with it (10x faster: the config check reads every
# group option at start-up), else the pure-Python one
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as a dict (empty file: {}), read with a safe loader."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_SAFE_LOADER) or {}  # noqa: S506 - a safe loader


def load_params(path: Path | None = None) -> dict[str, Any]:
    """``params.yaml`` of the repo (or ``path``) as a dict."""
    if path is None:
        root = find_repo_root() or REPO_ROOT
        path = root / "params.yaml"
    return load_yaml(path)


def resolve_models_dir(configured: str | os.PathLike | None) -> Path:
    """``$KIRIDASHI_MODELS_DIR``, else the configured folder (relative paths: repo root)."""
    env = os.environ.get("KIRIDASHI_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    path = Path(configured or "models").expanduser()
    if not path.is_absolute():
        path = (main_repo_root() or REPO_ROOT) / path
    return path


def import_target(target: str) -> type:
    """The class named by a dotted ``module.Class`` path."""
    module, _, attr = target.rpartition(".")
    if not module:
        raise ValueError(f"_target_ must be a dotted path 'package.module.Class', got {target!r}")
    return getattr(importlib.import_module(module), attr)
