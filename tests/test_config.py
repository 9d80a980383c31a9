"""conf/ (Hydra, the source of truth) and params.yaml (what `dvc repro` reads) must agree."""

from __future__ import annotations

import yaml

from kiridashi.cache import REPO_ROOT
from kiridashi.config import STAGE_SECTIONS, compose, load_params


def test_params_yaml_equals_composed_conf():
    assert load_params(REPO_ROOT / "params.yaml") == compose([]), (
        "params.yaml is stale: run `make params` (kiridashi params) and commit it"
    )


def test_every_stage_has_a_section_and_groups_switch():
    cfg = compose([])
    assert set(STAGE_SECTIONS) <= set(cfg)
    assert compose(["detect.scales=[0.75,1.0,1.25]"])["detect"]["scales"] == [0.75, 1.0, 1.25]
    groups = sorted(p.stem for p in (REPO_ROOT / "conf" / "segment").glob("*.yaml"))
    for option in groups:
        assert compose([f"segment={option}"])["segment"], option


def test_dvc_stages_declare_the_params_they_read():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for name in STAGE_SECTIONS:
        assert name in stages[name]["params"], name
    # a stage must not depend on another stage's section (it would re-run needlessly)
    for name, stage in stages.items():
        others = set(STAGE_SECTIONS) - {name}
        assert not others & set(stage["params"]), name


def test_no_param_named_like_a_dvc_reserved_key():
    """DVC drops params called `size` or `nfiles` from its run-cache key."""

    def walk(node, path=()):
        if isinstance(node, dict):
            for key, value in node.items():
                assert key not in ("size", "nfiles"), ".".join((*path, key))
                walk(value, (*path, key))

    walk(compose([]))
