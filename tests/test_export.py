"""kiridashi export: from an output folder to a LoRA-ready training set.

The end-to-end tests composite expression variants of the RenJS sprites of ../shared (one pose,
another expression) onto backgrounds, run the real pipeline on them once, and export the result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kiridashi import checks as kchecks
from kiridashi import cli
from kiridashi.export import canvas, captions, dedup, gate
from kiridashi.export.dataset import EXPORT_REPORT
from kiridashi.export.inputs import Crop
from kiridashi.export.settings import ExportError, load_settings
from tests.conftest import REPO, SHARED, shared_path

# character -> expression variants of one pose (RenJS-V2 sprites, 246x525 RGBA)
VARIANTS = {
    "Char1": ("Angry", "Happy", "Normal"),
    "Char2": ("Angry", "Happy", "Normal"),
    "Char3": ("Angry", "Happy", "Normal"),
    "Char1School": ("Angry", "Happy"),  # the same girl in another outfit: another group
}
BACKGROUNDS = ("beach1d.jpg", "library.jpg", "hospital1.jpg", "dawn1.jpg")
NO_GATE = [
    "export.min_score=0",
    "export.min_iou=0",
    f"export.ignore_flags=[{','.join(kchecks.CHECKS)}]",
]


def _sprite_name(character: str, expression: str) -> str:
    if character.endswith("School"):
        return f"{character[: -len('School')]}{expression}School.png"
    return f"{character}{expression}.png"


def composite(sprite: np.ndarray, background: np.ndarray, x: int, height: int) -> np.ndarray:
    """``sprite`` (RGBA) scaled to ``height`` rows, its top-left at (x, H - height), over RGB."""
    h0, w0 = sprite.shape[:2]
    w = round(w0 * height / h0)
    s = np.asarray(Image.fromarray(sprite).resize((w, height), Image.LANCZOS), np.float32)
    out = background.astype(np.float32).copy()
    y = out.shape[0] - height
    a = s[..., 3:4] / 255.0
    out[y:, x : x + w] = s[..., :3] * a + out[y:, x : x + w] * (1.0 - a)
    return out.round().astype(np.uint8)


def build_variants(folder: Path) -> dict[str, str]:
    """One 960x540 JPEG per (character, expression) in ``folder``; returns file -> character.

    As in a game's CG variants, a character's images differ only in the expression: the same
    place on the same background (each character has its own background).
    """
    sprites = shared_path("datasets", "sprites", "sprites", "renjs")
    bgs = shared_path("datasets", "sprites", "backgrounds", "moonlight")
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for c, (character, expressions) in enumerate(VARIANTS.items()):
        for expression in expressions:
            bg = Image.open(bgs / BACKGROUNDS[c % len(BACKGROUNDS)]).convert("RGB")
            bg = np.asarray(bg.resize((960, 540), Image.BILINEAR))
            sprite = np.asarray(Image.open(sprites / _sprite_name(character, expression)))
            img = composite(sprite, bg, x=200 + 120 * c, height=500)
            name = f"{character.lower()}_{expression.lower()}.jpg"
            Image.fromarray(img).save(folder / name, quality=94)
            truth[name] = character
    return truth


@pytest.fixture(scope="module")
def variants_run(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(output folder of `kiridashi extract` on the expression variants, file -> character)."""
    if not (SHARED / "datasets" / "sprites").is_dir():
        pytest.skip("../shared/datasets/sprites not available")
    root = tmp_path_factory.mktemp("variants")
    truth = build_variants(root / "input")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KIRIDASHI_CACHE_DIR", str(root / "cache"))
        mp.setenv("KIRIDASHI_HISTORY", str(root / "history.jsonl"))
        if (SHARED / "models").is_dir():
            mp.setenv("KIRIDASHI_MODELS_DIR", str(SHARED / "models"))
        assert cli.main(["extract", str(root / "input"), str(root / "output")]) == 0
    return root / "output", truth


@pytest.fixture
def output(variants_run, tmp_path) -> Path:
    """A private copy of the variants' output folder (tests may change it)."""
    out = tmp_path / "output"
    shutil.copytree(variants_run[0], out)
    return out


def export(output: Path, dataset: Path, *args: str) -> int:
    return cli.main(["export", str(output), str(dataset), *args])


def read_report(dataset: Path) -> dict:
    return json.loads((dataset / EXPORT_REPORT).read_text())


# ------------------------------------------------------------------------------ end to end


def test_expression_variants_collapse_to_one_per_group(variants_run, output, tmp_path, capsys):
    truth = variants_run[1]
    dataset = tmp_path / "dataset"
    assert export(output, dataset, "export.side=256", *NO_GATE) == 0
    doc = read_report(dataset)
    crops = doc["images"] + doc["dropped"]
    assert len(crops) == doc["summary"]["crops"] >= 8  # the pipeline cut out most images
    found = {truth[Path(c["source"]).name] for c in crops}
    kept = [truth[Path(i["source"]).name] for i in doc["images"]]
    assert len(found) == len(VARIANTS), found  # every character was cut out
    assert sorted(kept) == sorted(found), kept  # ... and kept exactly once
    for group in doc["groups"]:
        assert len({truth[Path(m["source"]).name] for m in group["members"]}) == 1, group
    near = [d for d in doc["dropped"] if d["rules"] == ["near_duplicate"]]
    assert len(near) == doc["summary"]["crops"] - len(VARIANTS)
    # the dashboard shows the groups, the kept crop of each marked
    html = (dataset / "dashboard.html").read_text()
    assert 'id="dedup-groups"' in html and html.count('<figure class="kept">') == len(doc["groups"])

    # export.dedup=false keeps every crop
    assert export(output, tmp_path / "all", "export.side=256", "export.dedup=false", *NO_GATE) == 0
    assert read_report(tmp_path / "all")["summary"]["kept"] == doc["summary"]["crops"]


def test_kohya_layout_sizes_captions_and_report(output, tmp_path, capsys):
    dataset = tmp_path / "dataset"
    source = json.loads((output / "extraction_results.json").read_text())
    input_dir = Path(source["input_dir"])
    first = source["images"][0]
    (input_dir / f"{Path(first['source']).stem}.txt").write_text("1girl, smile\nsmile, school\n")
    try:
        assert export(output, dataset, "--format", "kohya", "export.side=320",
                      "export.dedup=false", *NO_GATE) == 0  # fmt: skip
    finally:
        (input_dir / f"{Path(first['source']).stem}.txt").unlink()
    doc = read_report(dataset)
    folder = dataset / "10_demo"
    assert doc["folder"] == "10_demo" and folder.is_dir()
    pngs, txts = sorted(folder.glob("*.png")), sorted(folder.glob("*.txt"))
    assert len(pngs) == len(txts) == doc["summary"]["kept"] >= 1
    assert [p.stem for p in pngs] == [t.stem for t in txts]
    for png in pngs:
        with Image.open(png) as im:
            assert im.size == (320, 320) and im.mode == "RGBA"
    captions_by_source = {i["source"]: i["caption"] for i in doc["images"]}
    assert first["source"] in captions_by_source
    for source_rel, text in captions_by_source.items():
        assert text == ("demo, 1girl, smile, school" if source_rel == first["source"] else "demo")
    assert doc["summary"]["kept"] == doc["summary"]["crops"]
    out = capsys.readouterr().out
    assert "crops kept" in out and "10_demo" in out


def test_folder_format_background_and_gate(output, tmp_path):
    dataset = tmp_path / "dataset"
    # every detection scores below 1 (a score is at most 1: a larger min_score is refused by the
    # config check): the gate leaves out every crop, each with its reason
    assert export(output, tmp_path / "none", "export.min_score=1.0") == 0
    doc = read_report(tmp_path / "none")
    assert doc["summary"]["kept"] == 0 and doc["summary"]["dropped"] == doc["summary"]["crops"]
    assert all("export.min_score 1.0" in d["reasons"][-1] for d in doc["dropped"])

    assert export(output, dataset, "--format", "folder", "--name", "mary",
                  "export.background=white", "export.canvas=longest", "export.side=200",
                  *NO_GATE) == 0  # fmt: skip
    lines = (dataset / "metadata.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == read_report(dataset)["summary"]["kept"] >= 1
    for r in records:
        assert {"file_name", "source", "character", "box", "scores", "caption"} <= r.keys()
        assert r["caption"] == "mary"
        with Image.open(dataset / r["file_name"]) as im:
            assert im.mode == "RGB" and max(im.size) == 200


def test_reexport_reuses_renders_and_a_changed_crop_renders_alone(output, tmp_path, capsys):
    args = ["export.side=256", *NO_GATE]
    assert export(output, tmp_path / "a", *args) == 0
    first = read_report(tmp_path / "a")["cache"]
    n = first["export.image"]["computed"]
    assert n >= 2 and first["export.image"]["reused"] == 0
    # another caption, gate or layout name: no image is rendered again
    assert export(output, tmp_path / "a", *args, "export.caption='{name} {source}'",
                  "export.repeats=3") == 0  # fmt: skip
    again = read_report(tmp_path / "a")
    assert again["cache"]["export.image"] == {"computed": 0, "reused": n}
    assert again["cache"]["export.hash"]["computed"] == 0
    assert (tmp_path / "a" / "3_demo").is_dir() and not (tmp_path / "a" / "10_demo").exists()
    # one crop changes: only that crop is hashed and rendered again
    crop = output / again["images"][0]["crop"]
    rgba = np.asarray(Image.open(crop)).copy()
    rgba[rgba[..., 3] > 0, 0] ^= 1  # one bit of red in the visible pixels
    Image.fromarray(rgba).save(crop)
    assert export(output, tmp_path / "a", *args) == 0
    cache = read_report(tmp_path / "a")["cache"]
    assert cache["export.image"]["computed"] == 1 and cache["export.hash"]["computed"] == 1


def test_bad_input_is_one_error_line_and_keeps_the_previous_dataset(output, tmp_path):
    dataset = tmp_path / "dataset"
    assert export(output, dataset, "export.side=128") == 0
    before = sorted(p.relative_to(dataset) for p in dataset.rglob("*"))

    def run(out_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kiridashi.cli", "export", str(out_dir), str(dataset), *extra],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip

    results = output / "extraction_results.json"
    doc = json.loads(results.read_text())
    # a results file of another version
    results.write_text(json.dumps({**doc, "schema_version": 99}))
    proc = run(output)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: ") and "another version" in proc.stderr
    # missing crops
    results.write_text(json.dumps(doc))
    crop = output / doc["images"][0]["characters"][0]["crop"]
    data = crop.read_bytes()
    crop.unlink()
    proc = run(output)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "missing" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # a crop that breaks half-way through the export: no half-written dataset, no staging left
    crop.write_bytes(data[:100])
    proc = run(output, "export.side=64", "export.dedup=false", *NO_GATE)
    assert proc.returncode == 2 and "unreadable" in proc.stderr, proc.stderr
    assert sorted(p.relative_to(dataset) for p in dataset.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # bad settings and a folder of the user's
    proc = run(output, "export.background=purple")
    assert proc.returncode == 2 and "export.background" in proc.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    crop.write_bytes(data)
    assert cli.main(["export", str(output), str(mine)]) == 2
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_report_of_another_run_is_rejected_and_a_missing_one_is_built(output, tmp_path):
    report = output / "unified_quality_report.json"
    doc = json.loads(report.read_text())
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({**doc, "params_digest": "other"}))
    assert export(output, tmp_path / "d", "--report", str(stale)) == 2
    report.unlink()  # no report beside the results: it is built (not written) for the gate
    assert export(output, tmp_path / "d", "export.side=64") == 0
    assert read_report(tmp_path / "d")["quality_report"].startswith("built now")
    assert not report.exists()


# ------------------------------------------------------------------------------ the parts


def test_render_composites_edges_without_halo_and_never_upscales_past_the_limit():
    # a red disc with a soft edge; transparent pixels are black, as merge writes them
    yy, xx = np.mgrid[:100, :50]
    dist = np.hypot(yy - 50, xx - 25)
    alpha = (np.clip(20.5 - dist, 0, 1) * 255).round().astype(np.uint8)
    rgba = np.zeros((100, 50, 4), np.uint8)
    rgba[..., 0] = np.where(alpha > 0, 255, 0)
    rgba[..., 3] = alpha
    white = canvas.render(
        rgba, side=512, canvas="square", max_upscale=2.0, background=(255, 255, 255)
    )
    assert white.shape == (512, 512, 3)
    assert white[..., 0].min() >= 254  # red over white: no dark fringe anywhere
    ys, xs = np.nonzero(white[..., 1] < 250)
    assert (ys.max() - ys.min() + 1) <= 2 * 41 + 2  # scaled x2 (the limit), not to 512
    assert (
        abs((ys.min() + ys.max()) / 2 - 255.5) <= 1 and abs((xs.min() + xs.max()) / 2 - 255.5) <= 1
    )
    small = canvas.render(rgba, side=40, canvas="longest", max_upscale=2.0, background=None)
    assert small.shape == (40, 20, 4)
    edge = (small[..., 3] > 0) & (small[..., 3] < 255)
    assert edge.any() and small[edge, 0].min() >= 250  # straight colour kept at the edge


@pytest.mark.parametrize(
    ("value", "rgb"),
    [("transparent", None), ("white", (255, 255, 255)), ("gray", (128, 128, 128)),
     ("#ff8000", (255, 128, 0)), ("10, 20, 30", (10, 20, 30)), ([1, 2, 3], (1, 2, 3))],
)  # fmt: skip
def test_background_values(value, rgb):
    assert canvas.parse_background(value) == rgb


def test_settings_errors_are_one_line():
    for bad, needle in (
        ({"background": "#12"}, "export.background"),
        ({"format": "zip"}, "export.format"),
        ({"caption": "{name} {mood}"}, "unknown field {mood}"),
        ({"ignore_flags": ["blurry"]}, "unknown check"),
        ({"size": 768}, "export.side"),
        ({"side": "big"}, "export.side must be a number"),
    ):
        with pytest.raises(ExportError, match=None) as exc:
            load_settings(bad)
        assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_captions_from_sidecar_files(tmp_path):
    src = tmp_path / "scene.jpg"
    assert captions.read_tags(src, 0, ".txt") == ([], None)
    (tmp_path / "scene.txt").write_text("1girl, solo\n")
    (tmp_path / "scene_c1.txt").write_text("1boy")
    assert captions.read_tags(src, 0, ".txt")[0] == ["1girl", "solo"]
    assert captions.read_tags(src, 1, ".txt")[0] == ["1boy"]
    assert captions.render_caption("{name}, {tags}", "mary", [], "scene", 0) == "mary"
    text = captions.render_caption("{name}, {tags}, c{character}", "mary", ["a", "b"], "s", 2)
    assert text == "mary, a, b, c2"


def test_gate_reasons():
    settings = load_settings({"min_score": 0.5, "min_iou": 0.8, "min_side_px": 100,
                              "ignore_flags": ["tiny"]})  # fmt: skip
    good = Crop("crops/a_c0.png", "a.jpg", 0, [0, 0, 120, 300], 0.9, 0.95)
    assert gate.reasons(good, settings) == []
    bad = Crop("crops/b_c1.png", "b.jpg", 1, [0, 0, 50, 80], 0.2, 0.5,
               [{"check": "halo", "reason": "halo 40%"}, {"check": "tiny", "reason": "small"}])  # fmt: skip
    assert [rule for rule, _ in gate.reasons(bad, settings)] == [
        "flag:halo", "min_score", "min_iou", "min_side_px"
    ]  # fmt: skip
    no_gt = Crop("crops/c_c0.png", "c.jpg", 0, [0, 0, 200, 200], 0.9, None)
    assert gate.reasons(no_gt, settings) == []


def test_groups_are_led_by_the_best_crop():
    hashes = ["0000000000000000", "0000000000000003", "ffffffffffffffff", "000000000000000f"]
    groups = dedup.group(hashes, order=[1, 0, 2, 3], max_distance=2)
    assert [(g.best, g.members) for g in groups] == [(1, [(1, 0), (0, 2), (3, 2)]), (2, [(2, 0)])]
    assert dedup.group(hashes, order=[0, 1, 2, 3], max_distance=0)[0].members == [(0, 0)]


def test_a_crop_is_hashed_inside_the_detectors_character_box():
    from kiridashi.export.dedup import in_frame, perceptual_hash

    rng = np.random.default_rng(0)
    figure = np.dstack([rng.integers(0, 255, (120, 60, 3), dtype=np.uint8),
                        np.full((120, 60), 255, np.uint8)])  # fmt: skip
    stray = np.zeros((120, 100, 4), np.uint8)  # the same figure with a plank taken in on its left
    stray[:, 40:] = figure
    stray[60:70, :40] = (150, 110, 60, 255)
    frame = [240.0, 10.0, 300.0, 130.0]  # the detector's box: the figure only
    clipped = in_frame(stray, [200, 10, 300, 130], frame)
    assert np.array_equal(clipped, figure)
    assert perceptual_hash(clipped) == perceptual_hash(in_frame(figure, [240, 10, 300, 130], frame))
    assert in_frame(stray, [200, 10, 300, 130], None) is stray  # older results: the whole crop
