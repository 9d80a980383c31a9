"""Command-line parsing: Hydra overrides anywhere after the folders, clear errors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kiridashi import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def seen(monkeypatch) -> dict:
    captured: dict = {}
    monkeypatch.setattr(cli, "cmd_extract", lambda args: captured.update(vars(args)) or 0)
    return captured


@pytest.mark.parametrize(
    "argv",
    [
        ["extract", "in", "out", "--no-check", "segment=isnetis", "detect.scales=[1.0,1.25]"],
        ["extract", "in", "out", "segment=isnetis", "--no-check", "detect.scales=[1.0,1.25]"],
        ["extract", "--no-check", "in", "out", "segment=isnetis", "detect.scales=[1.0,1.25]"],
    ],
)
def test_overrides_may_follow_options(seen, argv):
    assert cli.main(argv) == 0
    assert seen["overrides"] == ["segment=isnetis", "detect.scales=[1.0,1.25]"]
    assert seen["no_check"] is True


def test_unknown_option_is_an_error(seen, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["extract", "in", "out", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_extract_overlays_option_draws_one_overlay_per_image(sample_images, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["extract", str(sample_images), str(out), "--no-check", "--overlays"]) == 0
    images = sorted(p.stem for p in sample_images.glob("*.jpg"))
    assert sorted(p.stem for p in (out / "overlays").glob("*.png")) == images
    assert f"overlays: {out / 'overlays'}" in capsys.readouterr().out


# -- the user's mistakes: one `error:` line, exit 2, nothing touched (real subprocesses) ---------


def _kiridashi(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "kiridashi.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("detect.scales=abc", "detect.scales=abc"),
        ("detect.scales=[0]", "detect.scales=[0]"),
        ("jobs=-1", "jobs=-1"),
        ("segment=nonexistent", "segment=nonexistent: unknown option (options: anime"),
        ("detect.scalez=1", "detect.scalez: unknown setting"),
    ],
)
def test_a_bad_setting_is_one_error_line_before_the_output_folder_is_touched(
    sample_images, tmp_path, setting, expected
):
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    earlier = {out / "masks" / "old.png": b"earlier run", out / "extraction_results.json": b"{}"}
    for path, data in earlier.items():
        path.write_bytes(data)
    line = _one_error_line(_kiridashi("extract", str(sample_images), str(out), setting))
    assert expected in line, line
    assert sorted(p for p in out.rglob("*")) == sorted([out / "masks", *earlier])
    assert all(path.read_bytes() == data for path, data in earlier.items())


def test_bad_paths_are_one_error_line(sample_images, tmp_path):
    image = next(p for p in sample_images.iterdir() if p.suffix == ".jpg")
    line = _one_error_line(_kiridashi("extract", str(tmp_path / "missing"), str(tmp_path / "o")))
    assert "input folder not found" in line
    line = _one_error_line(_kiridashi("extract", str(image), str(tmp_path / "o")))
    assert "input is a file, not a folder" in line
    assert not (tmp_path / "o").exists()
    line = _one_error_line(_kiridashi("overlay", str(image)))
    assert "not JSON (expected an extraction_results.json)" in line
    line = _one_error_line(_kiridashi("check", "--results", str(tmp_path / "missing.json")))
    assert "not found" in line
    line = _one_error_line(_kiridashi("config", "list", "nogroup"))
    assert "unknown group" in line


def test_debug_shows_the_traceback(tmp_path):
    proc = _kiridashi("--debug", "extract", str(tmp_path / "missing"), str(tmp_path / "o"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_version_and_config_commands(capsys):
    from kiridashi import __version__

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"kiridashi {__version__}"
    assert cli.main(["config", "list"]) == 0
    out = capsys.readouterr().out
    assert (
        "segment: anime (default), isnetis" in out and "preprocess: default (default), none" in out
    )
    assert cli.main(["config", "show", "segment=isnetis", "jobs=2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["jobs"] == 2 and shown["segment"]["backend"] == "isnetis"


def test_every_option_has_help():
    """Every argument of every command says what it does in --help."""
    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.help is None and not isinstance(action, argparse._HelpAction):
                missing.append(" ".join([*path, action.dest]))

    walk(cli.build_parser(), ["kiridashi"])
    assert not missing, missing
