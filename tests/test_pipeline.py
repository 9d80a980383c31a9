"""End-to-end behaviour of the cached pipeline, in-process (the DVC stages' own functions)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kiridashi import io as kio
from kiridashi.cache import ImageMemo
from kiridashi.pipeline import RESULTS, extract, run_manifest_stage, stage_merge

STAGE_DIRS = ("preprocess", "detect", "segment")


def run_stages(params: dict, input_dir: Path, work: Path, out: Path) -> dict:
    """The four DVC stages in order, as `dvc repro` would run them; returns counts per stage."""
    counts = {}
    up = None
    for step in STAGE_DIRS:
        runner = run_manifest_stage(
            step,
            params,
            work / step,
            input_dir=input_dir if up is None else None,
            upstream_dir=up,
        )
        counts[step] = dict(runner.counts[step])
        up = work / step
    doc = stage_merge(params, up, out)
    counts["merge"] = doc["summary"]["counts"]["merge"]
    return counts


def test_extract_writes_the_output_contract(sample_images, tmp_path, cfg):
    out = tmp_path / "out"
    doc = extract(sample_images, out, cfg)
    results = kio.read_json(out / RESULTS)
    assert results["schema_version"] == 1 and results == doc
    assert results["summary"]["processed"] == len(list(sample_images.glob("*.jpg")))
    for record in results["images"]:
        assert record["status"] == "ok", record
        assert len(record["content_hash"]) == 32
        src = Image.open(sample_images / record["source"])
        mask = Image.open(out / record["mask"])
        assert mask.size == src.size and mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        for ch in record["characters"]:
            x0, y0, x1, y1 = ch["box"]
            assert 0 <= x0 < x1 <= src.size[0] and 0 <= y0 < y1 <= src.size[1]
            crop = Image.open(out / ch["crop"])
            assert crop.mode == "RGBA" and crop.size == (x1 - x0, y1 - y0)
            alpha = np.asarray(crop)[:, :, 3]
            assert alpha.min() == 0 and alpha.max() == 255
            assert {"score", "detectors", "face_box", "keypoints"} <= set(ch)
    multi = [r for r in results["images"] if r["source"].startswith("multi")]
    if multi:
        assert len(multi[0]["characters"]) >= 2, "one crop per character"


def test_second_run_and_deleted_outputs_reuse_everything(sample_images, tmp_path, cfg):
    out = tmp_path / "out"
    first = extract(sample_images, out, cfg)["summary"]["counts"]
    assert first["merge"]["computed"] > 0
    shutil.rmtree(out)
    again = extract(sample_images, out, cfg)
    counts = again["summary"]["counts"]
    assert all(counts[s].get("computed", 0) == 0 for s in counts), counts
    assert (out / RESULTS).exists() and any((out / "crops").iterdir())


def test_adding_one_image_computes_one_per_stage(sample_images, extra_image, tmp_path, cfg):
    work, out = tmp_path / "work", tmp_path / "out"
    n = len(list(sample_images.glob("*.jpg")))
    run_stages(cfg, sample_images, work, out)
    for f in extra_image.iterdir():
        shutil.copy(f, sample_images / f.name)
    counts = run_stages(cfg, sample_images, work, out)
    for step, c in counts.items():
        assert c.get("computed", 0) == 1 and c.get("reused", 0) == n, (step, counts)


def test_new_scales_compute_only_the_new_scales(sample_images, tmp_path, cfg, monkeypatch):
    calls: list[tuple[str, dict, bool]] = []
    original = ImageMemo.__call__

    def spy(self, kind, params, compute):
        ran = []

        def wrapped():
            ran.append(True)
            return compute()

        value = original(self, kind, params, wrapped)
        calls.append((kind, params, bool(ran)))
        return value

    monkeypatch.setattr(ImageMemo, "__call__", spy)
    work, out = tmp_path / "work", tmp_path / "out"
    cfg["detect"]["scales"] = [1.0]
    run_stages(cfg, sample_images, work, out)
    calls.clear()
    cfg["detect"]["scales"] = [0.75, 1.0, 1.25]
    run_manifest_stage("detect", cfg, work / "detect", upstream_dir=work / "preprocess")
    scaled = [(k, p, ran) for k, p, ran in calls if "scale" in p]
    assert scaled, "detectors must key their cached results by scale"
    computed_scales = {p["scale"] for _, p, ran in scaled if ran}
    assert computed_scales == {0.75, 1.25}, computed_scales
    assert all(not ran for _, p, ran in scaled if p["scale"] == 1.0)


def test_bad_files_never_stop_a_run(quirks_dir, tmp_path, cfg):
    from tests.test_io import _copy_quirks

    src = _copy_quirks(quirks_dir, tmp_path / "quirks")
    (src / "q17_large_6000x4000.jpg").unlink()  # the large image has its own (slow) test
    (src / "q17_large_6000x4000_gt.png").unlink()
    doc = extract(src, tmp_path / "out", cfg)
    reasons = {s["source"]: s["reason"] for s in doc["skipped"]}
    assert set(reasons) == {
        "q18_truncated.jpg",
        "q19_zero_bytes.jpg",
        "q20_text_not_image.png",
        "q26_dangling_link.jpg",
    }
    assert all(r and "\n" not in r for r in reasons.values())
    assert "kana05_00060_cover_gt.png" in doc["unmatched_gt"]
    ok = {r["source"] for r in doc["images"] if r["status"] == "ok"}
    assert {"q22_symlink.jpg", "かな08_0001.jpg", "q15 with spaces.jpg", "sub/q21_sub_a.jpg"} <= ok
    assert (tmp_path / "out" / "masks" / "sub" / "q21_sub_a.png").exists()
    exif = Image.open(tmp_path / "out" / "masks" / "q08_exif_orient6.png")
    assert exif.size == (1600, 900)


@pytest.mark.slow
def test_large_image_keeps_full_resolution_mask(quirks_dir, tmp_path, cfg):
    src = tmp_path / "big"
    src.mkdir()
    shutil.copy(quirks_dir / "q17_large_6000x4000.jpg", src)
    doc = extract(src, tmp_path / "out", cfg)
    assert doc["images"][0]["status"] == "ok"
    assert Image.open(tmp_path / "out" / "masks" / "q17_large_6000x4000.png").size == (6000, 4000)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["segment=isnetis"], ("segment.model", "kiridashi models fetch isnetis")),
        (
            ["detect.detectors.yolo.enabled=true", "detect.detectors.yolo.weights=nope.pt"],
            ("detect.detectors.yolo.weights",),
        ),
    ],
)
def test_missing_model_stops_the_run_once_with_one_line(
    sample_images, tmp_path, monkeypatch, capsys, overrides, expected
):
    """A missing model file concerns every image: one error line and exit 2, not N skips."""
    from kiridashi.cli import main

    monkeypatch.setenv("KIRIDASHI_MODELS_DIR", str(tmp_path / "no-models"))
    out = tmp_path / "out"
    rc = main(["extract", str(sample_images), str(out), *overrides, "--no-check"])
    assert rc == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, errors
    assert all(text in errors[0] for text in expected), errors[0]
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["segment.input=raw"], "segment.input must be one of original, preprocessed, not 'raw'"),
        (["detect.views=[preprocessed,raw]"], "detect.views: unknown view 'raw'"),
        (["detect.detectors.animeface.views=[clahe]"], "detect.detectors.animeface.views"),
    ],
)
def test_an_invalid_setting_stops_the_run_once_before_any_image(
    sample_images, tmp_path, capsys, overrides, expected
):
    """A setting every image depends on is checked at start-up: one line, exit 2, no output."""
    from kiridashi.cli import main

    out = tmp_path / "out"
    rc = main(["extract", str(sample_images), str(out), *overrides, "--no-check"])
    assert rc == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], errors
    assert not out.exists() or not list(out.rglob("*.png"))


def test_a_stage_with_an_invalid_setting_exits_with_one_line(sample_images, tmp_path, cfg):
    params = {**cfg, "detect": {**cfg["detect"], "views": ["raw"]}}
    with pytest.raises(SystemExit, match=r"^error: detect\.views: unknown view 'raw'"):
        run_manifest_stage("detect", params, tmp_path / "detect", input_dir=sample_images)
    assert not (tmp_path / "detect" / "manifest.json").exists()


def test_a_batch_does_not_keep_every_image_in_memory(sample_images, cfg):
    """Each image's bytes are dropped once its step is done (the hash stays for the record)."""
    from kiridashi.pipeline import discover_sources, make_runner, run_step

    sources, records, _ = discover_sources(sample_images)
    run_step(make_runner(cfg), "preprocess", sources, records)
    assert all(r["status"] == "ok" for r in records)
    assert not any("data" in s.__dict__ for s in sources)
    assert all(s.hash == r["content_hash"] for s, r in zip(sources, records, strict=True))


def test_worker_count_deltas_add_up_in_the_parent(cfg):
    from kiridashi.pipeline import make_runner

    worker, parent = make_runner(cfg), make_runner(cfg)
    worker.counts["detect"]["reused"] += 2
    worker.cache.stats.count("detect.raw.lbp_cascade", computed=True)
    before = worker.tally()
    worker.counts["detect"]["computed"] += 1
    worker.counts["merge"]["skipped"] += 1
    worker.cache.stats.count("detect.raw.lbp_cascade", computed=False)
    worker.cache.stats.count("segment.embedding", computed=True)
    parent.add_tally(worker.tally() - before)
    assert parent.counts["detect"] == {"computed": 1}
    assert parent.counts["merge"] == {"skipped": 1}
    assert parent.cache.stats.by_kind == {
        "detect.raw.lbp_cascade": [0, 1],
        "segment.embedding": [1, 0],
    }


def test_segmenter_sees_the_original_image_at_work_size(sample_images, cfg):
    from kiridashi.pipeline import discover_sources, make_runner

    sources, _, _ = discover_sources(sample_images)
    src = sources[0]
    runner = make_runner(cfg)
    original, pre = runner.segment_input(src), runner.preprocess(src)["image"]
    assert original.shape == pre.shape and not np.array_equal(original, pre)
    as_detected = {**cfg, "segment": {**cfg["segment"], "input": "preprocessed"}}
    np.testing.assert_array_equal(make_runner(as_detected).segment_input(src), pre)


def test_counts_add_up_per_step_and_in_total(sample_images, tmp_path, cfg, capsys):
    """Every input is exactly one of computed, reused or skipped in each step, and one of
    processed or skipped in total, with an undecodable file and a dangling link among them."""
    n_images = len([p for p in sample_images.glob("*.jpg") if not p.stem.endswith("_gt")])
    (sample_images / "broken.jpg").write_bytes(b"not a jpeg at all")
    (sample_images / "gone.png").symlink_to(tmp_path / "nowhere.png")
    inputs = n_images + 2
    out = tmp_path / "out"
    for run in ("first", "again"):
        doc = extract(sample_images, out, cfg)
        s = doc["summary"]
        assert s["images"] == inputs, (run, s)
        assert s["processed"] + s["skipped"] == inputs and s["skipped"] == 2, (run, s)
        assert s["computed"] + s["reused"] == s["processed"], (run, s)
        for step, c in s["counts"].items():
            assert sum(c.values()) == inputs, (run, step, c)
            assert c.get("skipped", 0) == 2, (run, step, c)
        printed = capsys.readouterr().out
        assert f"{n_images} of {inputs} images processed" in printed and "2 skipped" in printed
    assert s["reused"] == n_images and s["computed"] == 0
