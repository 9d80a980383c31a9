"""The config schema: every key, type and allowed value, checked once at start-up.

``conf/`` stays the source of truth: the keys and types come from its YAML files themselves (the
root ``config.yaml`` and every option of every group), and this module adds only what YAML cannot
say: ranges and choices (:data:`RULES`). A composed config (``kiridashi extract`` overrides, or
``params.yaml`` in a DVC stage) is checked against the group options it is closest to, so
``segment=sam_vit_b`` is checked against ``conf/segment/sam_vit_b.yaml``.

:func:`validate` raises :class:`~kiridashi.config.ConfigError` with one line naming the key, the
bad value and what is allowed; :func:`check_overrides` does the same for Hydra overrides before
Hydra composes them (unknown keys, unknown group options, syntax errors).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kiridashi.config import (
    CONF_DIR,
    DETECT_VIEWS,
    SEGMENT_INPUTS,
    ConfigError,
    check_settings,
    compose,
    load_params,
    load_yaml,
)


@dataclass(frozen=True)
class Rule:
    """What a value (each element, for a list) may be, beyond its type."""

    gt: float | None = None  # greater than
    ge: float | None = None  # at least
    le: float | None = None  # at most
    choices: tuple | None = None
    nonempty: bool = False  # lists: at least one element

    def describe(self) -> str:
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.ge is not None:
            parts.append(f">= {self.ge:g}")
        if self.le is not None:
            parts.append(f"<= {self.le:g}")
        return " and ".join(parts)

    def allows(self, value: Any) -> bool:
        if self.choices is not None and value not in self.choices:
            return False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.gt is not None and not value > self.gt:
                return False
            if self.ge is not None and not value >= self.ge:
                return False
            if self.le is not None and not value <= self.le:
                return False
        return True


SHARE = Rule(ge=0, le=1)
NON_NEGATIVE = Rule(ge=0)
POSITIVE = Rule(gt=0)
DEVICES = Rule(choices=("auto", "cpu", "cuda"))

# Ranges and choices by dotted key (fnmatch patterns; ``*`` also matches dots). The first matching
# pattern applies; keys without one are checked for their type only.
RULES: tuple[tuple[str, Rule], ...] = (
    ("jobs", Rule(ge=1)),
    ("cache.size_limit_gb", POSITIVE),
    ("executor.name", Rule(choices=("local", "ray"))),
    ("executor.actors", Rule(ge=1)),
    ("executor.in_flight", Rule(ge=1)),
    ("executor.retries", Rule(ge=0)),
    ("detect.scales", Rule(gt=0, nonempty=True)),
    ("detect.views", Rule(choices=DETECT_VIEWS)),
    ("detect.detectors.*.views", Rule(choices=DETECT_VIEWS)),
    ("detect.detectors.*.scale_factor", Rule(gt=1)),
    ("detect.small_faces.upscale", Rule(gt=1)),
    ("detect.detectors.mediapipe_face.model_selection", Rule(choices=(0, 1))),
    ("detect.detectors.mediapipe_pose.model_complexity", Rule(choices=(0, 1, 2))),
    ("detect.foreground.model_selection", Rule(choices=(0, 1), nonempty=True)),
    (
        "detect.fusion.conf_type",
        Rule(choices=("avg", "max", "box_and_model_avg", "absent_model_aware_avg")),
    ),  # fmt: skip
    ("segment.input", Rule(choices=SEGMENT_INPUTS)),
    ("segment.device", DEVICES),
    ("segment.model_type", Rule(choices=("vit_b", "vit_l", "vit_h"))),
    ("segment.selfie.models", Rule(choices=(0, 1), nonempty=True)),
    ("segment.selfie.combine", Rule(choices=("max", "mean"))),
    ("segment.enclosure.barrier", Rule(choices=("lines", "edges"))),
    ("segment.iterations", Rule(ge=1)),
    ("segment.bias", Rule()),
    ("segment.plates.thumb_side", Rule(ge=8)),
    ("segment.plates.chunk", Rule(ge=2)),
    ("segment.plates.agree", SHARE),
    ("segment.plates.min_shared", SHARE),
    ("merge.edges.mode", Rule(choices=("soft", "hard"))),
    ("merge.edges.alpha", Rule(choices=("matte", "ramp"))),
    ("notify.timeout_s", POSITIVE),
    ("preprocess.max_pixels", POSITIVE),
    ("serve.port", Rule(ge=1, le=65535)),
    ("serve.max_upload_mb", POSITIVE),
    ("serve.max_unzip_mb", POSITIVE),
    ("serve.request_timeout_s", POSITIVE),
    ("*threshold", SHARE),
    ("*fraction", SHARE),
    ("*_share", SHARE),
    ("*confidence", SHARE),
    ("*visibility", SHARE),
    ("*likelihood", SHARE),
    ("*min_score", SHARE),
    ("*iou*", SHARE),
    ("*thr", SHARE),
    ("*tolerance", NON_NEGATIVE),
    ("*", NON_NEGATIVE),  # every other number (sizes, weights, margins, counts) is >= 0
)

# integer defaults that also take a fractional value
NUMBER_KEYS = (
    "cache.size_limit_gb",
    "notify.timeout_s",
    "preprocess.*.sigma_*",
    "serve.max_upload_mb",
    "serve.max_unzip_mb",
    "serve.request_timeout_s",
)


def rule_for(key: str) -> Rule:
    for pattern, rule in RULES:
        if fnmatch.fnmatchcase(key, pattern):
            return rule
    return Rule()


# -------------------------------------------------------------------------- conf/ as the schema


def group_options(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """``{"segment": ["anime", "isnetis", ...], ...}``: the option files of every group."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(Path(conf_dir).iterdir())
        if d.is_dir()
    }


@functools.lru_cache(maxsize=8)
def _conf_tree(conf_dir: str) -> tuple[dict, dict[str, dict[str, dict]], dict[str, str]]:
    """(root keys, {group: {option: section}}, {group: default option}) read from the YAML."""
    root_doc = load_yaml(Path(conf_dir) / "config.yaml")
    defaults = {}
    for item in root_doc.pop("defaults", []):
        if isinstance(item, dict):
            defaults.update(item)
    groups = {
        group: {opt: load_yaml(Path(conf_dir) / group / f"{opt}.yaml") for opt in options}
        for group, options in group_options(Path(conf_dir)).items()
    }
    return root_doc, groups, defaults


def default_options(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """``{"segment": "anime", ...}``: the option each group takes by default."""
    return dict(_conf_tree(str(conf_dir))[2])


def default_config(conf_dir: Path = CONF_DIR) -> dict:
    """The config with every group at its default option, read straight from the YAML files
    (equal to Hydra's composition with no overrides; a test keeps them equal)."""
    root, groups, defaults = _conf_tree(str(conf_dir))
    out = {g: groups[g][opt] for g, opt in defaults.items() if g in groups}
    return json.loads(json.dumps({**out, **root}))


def reference_for(cfg: dict, conf_dir: Path = CONF_DIR) -> dict:
    """The schema for ``cfg``: the root keys, and per group the option ``cfg`` is closest to (the
    fewest keys missing or extra, then the fewest values that differ)."""
    root, groups, defaults = _conf_tree(str(conf_dir))
    ref: dict = json.loads(json.dumps(root))
    for group, options in groups.items():
        section = cfg.get(group)
        if not isinstance(section, dict):
            ref[group] = options[defaults.get(group, next(iter(options)))]
            continue
        ref[group] = min(options.values(), key=lambda opt: _distance(section, opt))
    return ref


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _distance(section: dict, option: dict) -> tuple[int, int]:
    a, b = _flat(section), _flat(option)
    return len(a.keys() ^ b.keys()), sum(a[k] != b[k] for k in a.keys() & b.keys())


# -------------------------------------------------------------------------- checking


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _type_name(default: Any, key: str) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int) and not _number_key(key):
        return "an integer"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, list):
        return "a list" + (f" of {_plural(_type_name(default[0], key))}" if default else "")
    if isinstance(default, dict):
        return "a group of settings"
    return "a value"


def _plural(name: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings",
            "true or false": "true/false values"}.get(name, name)  # fmt: skip


# numbers that also take null (off), as their config comments say
NULLABLE_KEYS = (
    "segment.clip_margin",
    "segment.figure.veto",
    "segment.figure.blind_fill",
    "segment.head.hair_colour",
    "segment.fullres.sigma",
    "segment.colour.consensus_sigma",
)


def _number_key(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in NUMBER_KEYS)


def _type_ok(value: Any, default: Any, key: str) -> bool:
    if default is None:
        return True
    if value is None and any(fnmatch.fnmatchcase(key, p) for p in NULLABLE_KEYS):
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(default, int) and not _number_key(key):
        return isinstance(value, int)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        return isinstance(value, list) and all(
            _type_ok(v, default[0], key) for v in value if default
        )
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def _allowed(default: Any, key: str, rule: Rule) -> str:
    if rule.choices is not None:
        choices = ", ".join(map(str, rule.choices))
        what = f"a list of: {choices}" if isinstance(default, list) else f"one of {choices}"
    else:
        what = _type_name(default, key)
        if (extra := rule.describe()) and not isinstance(default, (bool, dict)):
            what += (" each " if isinstance(default, list) else " ") + extra
    if rule.nonempty:
        what = "a non-empty " + what.removeprefix("a ")
    if default is not None and not isinstance(default, dict):
        what += f" (default {_show(default)})"
    return what


def _issues(value: Any, default: Any, key: str) -> Iterator[str]:
    """One-line problems of ``value`` against the reference ``default`` at ``key``."""
    rule = rule_for(key)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            yield f"{key}={_show(value)}: expected {_allowed(default, key, rule)}"
            return
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k not in default:
                yield f"{sub}: unknown setting{_suggest(str(k), default, key)}"
            else:
                yield from _issues(v, default[k], sub)
        for k in default:
            if k not in value:
                sub = f"{key}.{k}" if key else str(k)
                yield f"{sub}: missing (expected {_allowed(default[k], sub, rule_for(sub))})"
        return
    if not _type_ok(value, default, key):
        yield f"{key}={_show(value)}: expected {_allowed(default, key, rule)}"
        return
    items = value if isinstance(value, list) else [value]
    if rule.nonempty and isinstance(value, list) and not value:
        yield f"{key}={_show(value)}: expected {_allowed(default, key, rule)}"
    for item in items:
        if item is not None and not rule.allows(item):
            yield f"{key}={_show(value)}: expected {_allowed(default, key, rule)}"
            return


def _suggest(name: str, known: dict, parent: str) -> str:
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
    where = f" in {parent}" if parent else ""
    if close:
        return f" (did you mean {(parent + '.') if parent else ''}{close[0]}?)"
    return f"{where} (known: {', '.join(map(str, known))})"


def problems(cfg: dict, conf_dir: Path = CONF_DIR, partial: bool = False) -> list[str]:
    """Every problem of ``cfg`` as one line each (empty: valid). ``partial``: sections that are
    absent are not missing (a DVC stage's config holds only the sections it needs)."""
    ref = reference_for(cfg, conf_dir)
    if partial:
        ref = {k: v for k, v in ref.items() if k in cfg}
    out = list(_issues(cfg, ref, ""))
    out += _cross_checks(cfg)
    return out


def _cross_checks(cfg: dict) -> list[str]:
    """Settings that name other settings: detector names must be known detectors."""
    detect = cfg.get("detect")
    if not isinstance(detect, dict) or not isinstance(detect.get("detectors"), dict):
        return []
    known = list(detect["detectors"])
    out = []
    for key, node in (
        ("detect.face_recheck.detectors", detect.get("face_recheck")),
        ("detect.small_faces.detectors", detect.get("small_faces")),
        ("detect.character.figure_evidence.detectors",
         (detect.get("character") or {}).get("figure_evidence")),
    ):  # fmt: skip
        names = node.get("detectors") if isinstance(node, dict) else None
        for name in names or []:
            if name not in known:
                out.append(f"{key}: unknown detector {name!r} (known: {', '.join(known)})")
    small = detect.get("small_faces")
    if isinstance(small, dict) and small.get("figure_detector", "") not in known:
        name = small.get("figure_detector")
        out.append(
            f"detect.small_faces.figure_detector: unknown detector {name!r} "
            f"(known: {', '.join(known)})"
        )
    return out


def validate(cfg: dict, conf_dir: Path = CONF_DIR, partial: bool = False) -> dict:
    """Raise ConfigError with the first problem of ``cfg`` (see :func:`problems`); return cfg."""
    check_settings(cfg)
    if found := problems(cfg, conf_dir, partial):
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"invalid setting {found[0]}{more}")
    return cfg


# -------------------------------------------------------------------------- overrides


def check_overrides(overrides: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise ConfigError for an override Hydra would refuse (or accept wrongly): bad syntax, an
    unknown group option, an unknown key (also ``+key=...``: no setting is added from outside)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    options = group_options(conf_dir)
    parsed = []
    for text in overrides:
        try:
            parsed.append(parser.parse_override(text))
        except HydraException as exc:
            raise ConfigError(f"cannot read override {text!r}: {_first_line(exc)}") from None
    chosen: dict = {}
    root, groups, defaults = _conf_tree(str(conf_dir))
    for ov in parsed:
        key = ov.key_or_group
        if key in options and not ov.is_delete():
            value = ov.value()
            if not isinstance(value, str) or value not in options[key]:
                raise ConfigError(
                    f"{key}={_show(value)}: unknown option (options: {', '.join(options[key])})"
                )
            chosen[key] = value
    ref = json.loads(json.dumps(root))
    for group, opts in groups.items():
        ref[group] = opts[chosen.get(group, defaults.get(group, next(iter(opts))))]
    for ov in parsed:
        key = ov.key_or_group
        if key in options:
            continue
        node: Any = ref
        parts = key.split(".")
        for depth, part in enumerate(parts):
            parent = ".".join(parts[:depth])
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {parent} is a single value, not a group of settings")
            if part not in node:
                raise ConfigError(f"{key}: unknown setting{_suggest(part, node, parent)}")
            node = node[part]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def compose_valid(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> dict:
    """The composed config, checked: overrides first (:func:`check_overrides`), then every value
    (:func:`validate`). Whatever Hydra still refuses is a ConfigError with its first line."""
    from hydra.errors import HydraException

    overrides = list(overrides or [])
    check_overrides(overrides, conf_dir)
    try:
        cfg = compose(overrides, conf_dir)
    except HydraException as exc:
        raise ConfigError(_first_line(exc)) from None
    return validate(cfg, conf_dir)


def load_valid_params(path: Path | None = None) -> dict:
    """``params.yaml``, checked like a composed config (what every DVC stage reads first)."""
    try:
        params = load_params(path)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read params.yaml: {_first_line(exc)}") from None
    return validate(params)
