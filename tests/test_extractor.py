"""The Python API: ``Extractor(cfg).extract(bytes)`` shares its results with ``kiridashi extract``."""

from __future__ import annotations

import shutil

from kiridashi import Extractor
from kiridashi import io as kio
from kiridashi.extractor import safe_name
from kiridashi.pipeline import RESULTS, extract
from tests.conftest import bomb_png


def _one_image(sample_images, tmp_path):
    path = sorted(p for p in sample_images.glob("*.jpg"))[0]
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    return folder / path.name


def test_an_image_extracted_by_the_cli_is_reused_by_the_api(sample_images, tmp_path, cfg):
    image = _one_image(sample_images, tmp_path)
    doc = extract(image.parent, tmp_path / "out", cfg)
    assert doc["summary"]["computed"] == 1
    cli_record = doc["images"][0]

    result = Extractor(cfg).extract(image.read_bytes(), name=image.name, out_dir=tmp_path / "api")
    assert result.ok and result.cached  # from the cache the CLI filled: nothing recomputed
    api_record = {k: v for k, v in result.record.items() if k not in ("flags", "cached")}
    assert api_record == cli_record
    assert len(result.crops) == len(cli_record["characters"]) >= 1
    for ch, png in zip(cli_record["characters"], result.crops, strict=True):
        assert (tmp_path / "out" / ch["crop"]).read_bytes() == png
        assert (tmp_path / "api" / ch["crop"]).read_bytes() == png
    assert isinstance(result.record["flags"], list)


def test_a_second_extract_is_a_cache_hit_and_bad_input_is_one_line(sample_images, tmp_path, cfg):
    data = _one_image(sample_images, tmp_path).read_bytes()
    ex = Extractor(cfg)
    first = ex.extract(data, name="a.jpg")
    assert first.ok and not first.cached
    again = Extractor(cfg).extract(data, name="a.jpg")  # a new process-like start: disk cache
    assert again.ok and again.cached and again.crops == first.crops
    assert again.record["characters"] == first.record["characters"]

    text = ex.extract(b"just some text\n", name="notes.txt")
    assert not text.ok and text.reason == "not an image (unknown file signature)"
    bomb = bomb_png()
    result = ex.extract(bomb, name="bomb.png")
    assert not result.ok and "decompression bomb" in result.reason
    # the same line `kiridashi extract` records for that file
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb)
    doc = extract(folder, tmp_path / "bad_out", cfg)
    assert doc["skipped"][0]["reason"] == result.reason
    kio.read_json(tmp_path / "bad_out" / RESULTS)


def test_upload_names_are_made_safe():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\x\\my pic (1).png") == "my_pic_1_.png"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("") == "image"
