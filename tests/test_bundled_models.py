"""The LBP anime-face cascade ships inside the package; ``models_dir`` only overrides it."""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

import pytest

import kiridashi
from kiridashi import io as kio
from kiridashi.detectors.base import MissingModel, build
from kiridashi.detectors.lbp_cascade import LbpCascade, bundled_cascades, resolve_cascade
from kiridashi.models import BUNDLED_DIR, REGISTRY, sha256_of
from tests.conftest import REPO, shared_path

CASCADE = REGISTRY["lbpcascade_animeface"]


def test_bundled_cascade_is_the_registered_file_inside_the_package():
    bundled = importlib.resources.files("kiridashi.detectors") / "data" / CASCADE.filename
    assert bundled.is_file()
    path = Path(str(bundled)).resolve()
    assert path == (BUNDLED_DIR / CASCADE.filename).resolve()
    assert path.is_relative_to(Path(kiridashi.__file__).resolve().parent)
    assert sha256_of(path) == CASCADE.sha256
    assert bundled_cascades() == [CASCADE.filename]


def test_bundled_cascade_keeps_its_licence_and_notices():
    header = (BUNDLED_DIR / CASCADE.filename).read_text(encoding="utf-8")[:2000]
    assert "The MIT License (MIT)" in header and "Copyright (C) 2011 by nagadomi" in header
    notice = (BUNDLED_DIR / "NOTICE").read_text(encoding="utf-8")
    assert "https://github.com/nagadomi/lbpcascade_animeface" in notice
    assert "Permission is hereby granted, free of charge" in notice
    top = (REPO / "NOTICE").read_text(encoding="utf-8")
    assert "kiridashi/detectors/data/lbpcascade_animeface.xml" in top and "MIT" in top


def test_default_cascade_builds_from_an_empty_models_dir_and_finds_faces(cfg, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    det = build("lbp_cascade", cfg["detect"]["detectors"]["lbp_cascade"], models_dir=empty)
    assert isinstance(det, LbpCascade)
    assert det.path == BUNDLED_DIR / CASCADE.filename
    grid = shared_path("datasets", "faces", "anime_faces_grid.jpg")
    faces = det.detect(kio.load_image(grid).rgb)
    assert 28 <= len(faces) <= 40


def test_a_copy_in_models_dir_takes_precedence_and_absolute_paths_are_kept(tmp_path):
    local = tmp_path / CASCADE.filename
    shutil.copy(BUNDLED_DIR / CASCADE.filename, local)
    assert resolve_cascade(CASCADE.filename, tmp_path, "lbp") == local
    assert resolve_cascade(str(local), tmp_path / "elsewhere", "lbp") == local
    assert resolve_cascade(CASCADE.filename, tmp_path / "elsewhere", "lbp").parent == BUNDLED_DIR


@pytest.mark.parametrize(
    ("model_file", "hint"),
    [
        ("nope.xml", "bundled cascade: lbpcascade_animeface.xml"),
        ("/no/such/dir/lbpcascade_animeface.xml", "check the path"),
        ("sub/lbpcascade_animeface.xml", "kiridashi models fetch lbpcascade_animeface"),
    ],
)
def test_a_cascade_found_nowhere_is_a_missing_model(tmp_path, model_file, hint):
    with pytest.raises(MissingModel, match=r"detect\.detectors\.lbp\.model_file") as err:
        resolve_cascade(model_file, tmp_path, "lbp")
    assert hint in str(err.value)
