"""Command-line parsing: Hydra overrides anywhere after the folders, clear errors."""

from __future__ import annotations

import pytest

from kiridashi import cli


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
