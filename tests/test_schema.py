"""The config schema (kiridashi/schema.py): conf/ read as Hydra reads it, every bad setting one
line naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from kiridashi.config import ConfigError, compose, load_params
from kiridashi.schema import (
    compose_valid,
    default_config,
    group_options,
    problems,
    validate,
)


def test_the_schema_reads_conf_as_hydra_composes_it():
    assert default_config() == compose([])


@pytest.mark.parametrize(
    ("group", "option"),
    [(g, o) for g, opts in group_options().items() for o in opts],
)
def test_every_shipped_option_is_valid(group, option):
    assert problems(compose([f"{group}={option}"])) == []


def test_params_yaml_is_valid():
    assert problems(load_params()) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["detect.scales=abc"], "detect.scales=abc: expected a non-empty list of numbers each > 0"),
        (["detect.scales=[0]"], "detect.scales=[0]: expected a non-empty list of numbers each > 0"),
        (["detect.scales=[]"], "detect.scales=[]"),
        (["jobs=-1"], "jobs=-1: expected an integer >= 1"),
        (["jobs=1.5"], "jobs=1.5: expected an integer"),
        (["segment=nonexistent"], "segment=nonexistent: unknown option (options: anime, isnetis"),
        (["detect.scalez=1"], "detect.scalez: unknown setting (did you mean detect.scales?)"),
        (["+detect.extra=1"], "detect.extra: unknown setting"),
        (["jobs=[1"], "cannot read override 'jobs=[1'"),
        (["merge.edges.mode=glow"], "merge.edges.mode=glow: expected one of soft, hard"),
        (["merge.threshold=1.5"], "merge.threshold=1.5: expected a number >= 0 and <= 1"),
        (["detect.detectors.lbp_cascade.enabled=3"], "enabled=3: expected true or false"),
        (["segment.multimask=false"], "segment.multimask: unknown setting"),
        (["~detect.scales"], "detect.scales: missing"),
        (["detect.face_recheck.detectors=[nope]"], "unknown detector 'nope'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_key_value_and_what_is_allowed(overrides, expected):
    with pytest.raises(ConfigError) as exc:
        compose_valid(overrides)
    message = str(exc.value)
    assert "\n" not in message
    assert expected in message, message


def test_an_option_of_another_group_is_checked_against_its_own_file():
    cfg = compose_valid(["segment=sam_vit_b", "segment.multimask=false"])
    assert cfg["segment"]["multimask"] is False
    cfg["segment"]["multimask"] = "no"
    with pytest.raises(ConfigError, match=r"segment\.multimask=no: expected true or false"):
        validate(cfg)


def test_fractional_values_where_an_integer_default_allows_them():
    assert compose_valid(["cache.size_limit_gb=0.5"])["cache"]["size_limit_gb"] == 0.5


@pytest.mark.parametrize(
    "override",
    [
        "segment.figure.veto=null",
        "segment.figure.blind_fill=null",
        "segment.head.hair_colour=null",
        "segment.fullres.sigma=null",
        "segment.colour.consensus_sigma=null",
    ],
)
def test_the_numbers_whose_comment_says_null_turns_them_off_take_null(override):
    key = override.split("=")[0].split(".")
    cfg = compose_valid([override])
    assert cfg[key[0]][key[1]][key[2]] is None
    with pytest.raises(ConfigError, match="expected a number"):
        compose_valid(["segment.bias=null"])  # the others do not


def test_a_partial_config_checks_only_its_sections(cfg):
    partial = {"detect": cfg["detect"], "jobs": 2}
    assert validate(partial, partial=True) is partial
    with pytest.raises(ConfigError):
        validate(partial)  # a whole config misses the other sections


@pytest.mark.parametrize(
    "stage", ["preprocess", "detect", "segment", "merge", "evaluate", "export"]
)
def test_every_dvc_stage_checks_params_yaml_first(tmp_path, stage):
    """A bad value in params.yaml ends each stage with one error: line before any input is read."""
    import os
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO

    params = load_params()
    params["detect"]["scales"] = [0]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    args = {"evaluate": ["missing", "eval", "reports"], "export": ["missing", "eval", "dataset"]}
    args = args.get(stage, ["missing", "out"])
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert lines == [
        "error: invalid setting detect.scales=[0]: expected a non-empty list of numbers each > 0 "
        "(default [1.0])"
    ], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml", "params.yaml"]
