"""``kiridashi serve``: a real server in a subprocess, talked to over HTTP (and a real headless
chromium for the page). Skipped when the ``serve`` extra is not installed."""

from __future__ import annotations

import http.client
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
    pytest.importorskip(_module, reason="needs the serve extra: pip install -e '.[serve]'")

from tests.conftest import SHARED, _sample_images, bomb_png  # noqa: E402
from tests.serve_client import REPO, free_port, start_server  # noqa: E402

TOKEN = "s3cret-test-token"


def _env(work: Path) -> dict:
    env = dict(os.environ)
    env["KIRIDASHI_CACHE_DIR"] = str(work / "cache")
    env["KIRIDASHI_HISTORY"] = str(work / "history.jsonl")
    if (SHARED / "models").is_dir():
        env["KIRIDASHI_MODELS_DIR"] = str(SHARED / "models")
    for key in ("KIRIDASHI_TOKEN", "PUSHOVER_TOKEN", "PUSHOVER_USER"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("serve")
    roots = work / "roots"
    _sample_images(roots / "images")
    (roots / "escape").symlink_to(REPO, target_is_directory=True)  # a link leaving the root
    return work


@pytest.fixture(scope="module")
def server(work):
    srv = start_server(work, _env(work), [f"serve.roots=[{work / 'roots'}]"], ["--token", TOKEN])
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _image(work: Path, k: int = 0) -> tuple[str, bytes]:
    path = sorted((work / "roots" / "images").glob("*.jpg"))[k]
    return path.name, path.read_bytes()


def test_extract_answers_with_working_crop_urls_and_repeats_from_the_cache(server, work):
    name, data = _image(work)
    first = server.upload("/v1/extract", "image", name, data)
    assert first.status == 200, first.body
    rec = first.json()
    assert rec["status"] == "ok" and rec["source"] == name and rec["cached"] is False
    assert rec["characters"], rec
    for key in ("box", "score", "detectors", "face_box", "keypoints", "crop", "crop_url"):
        assert key in rec["characters"][0]
    assert isinstance(rec["flags"], list)
    for url in [rec["mask_url"]] + [c["crop_url"] for c in rec["characters"]]:
        png = server.get(url)
        assert png.status == 200 and png.headers["content-type"] == "image/png"
        assert png.body.startswith(b"\x89PNG")
    crop = server.get(rec["characters"][0]["crop_url"]).body
    assert crop[25] == 6  # colour type 6: RGBA

    t0 = time.perf_counter()
    again = server.upload("/v1/extract", "image", name, data)
    assert again.status == 200 and again.json()["cached"] is True
    assert time.perf_counter() - t0 < 5
    assert again.json()["characters"] == rec["characters"]

    zipped = server.upload("/v1/extract?format=zip", "image", name, data)
    assert zipped.status == 200 and zipped.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(zipped.body)).namelist()
    assert names == sorted(Path(c["crop"]).name for c in rec["characters"])

    metrics = server.get("/metrics").body.decode()
    assert 'kiridashi_requests_total{method="POST",route="/v1/extract",status="200"}' in metrics
    assert "kiridashi_request_seconds_bucket" in metrics
    assert "kiridashi_cache_hits_total 2.0" in metrics
    assert "kiridashi_queue_length" in metrics


def test_an_upload_over_the_limit_gets_413_before_it_is_read(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/v1/extract")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(60 * 2**20))  # 60 MB announced, none of it sent
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    assert "upload too large" in resp.read().decode()
    conn.close()

    # no Content-Length (chunked): refused once more than the limit has arrived
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.putrequest("POST", "/v1/extract")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    head = (
        b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    chunk = b"0" * (2**20)
    try:
        for piece in [head] + [chunk] * 60:
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before everything was sent
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()


def test_bad_inputs_get_422_with_the_line_extract_gives(server):
    text = server.upload("/v1/extract", "image", "notes.txt", b"hello, not an image\n")
    assert text.status == 422
    assert text.json()["detail"] == "not an image (unknown file signature)"
    bomb = server.upload("/v1/extract", "image", "bomb.png", bomb_png())
    assert bomb.status == 422 and "decompression bomb" in bomb.json()["detail"]
    missing = server.upload("/v1/extract", "file", "a.png", b"x")
    assert missing.status == 422
    bad = server.upload("/v1/extract", "image", "a.png", b"x", overrides='["detect.nope=1"]')
    assert bad.status == 422 and "unknown setting" in bad.json()["detail"]


def test_jobs_outside_the_roots_get_403(server, work):
    for folder in ("../../..", str(work), "images/../..", "escape", "/etc"):
        reply = server.post_json("/v1/jobs", {"input": folder})
        assert reply.status == 403, (folder, reply.body)
    assert server.post_json("/v1/jobs", {"input": "no_such_folder"}).status == 404
    assert server.post_json("/v1/jobs", {"nope": 1}).status == 422


def test_a_folder_job_and_a_zip_job_run_to_results(server, work):
    reply = server.post_json("/v1/jobs", {"input": "images"})
    assert reply.status == 202, reply.body
    job = server.wait_job(reply.json()["id"])
    n_images = len(list((work / "roots" / "images").glob("*.jpg")))
    assert job["status"] == "done" and job["total"] == job["done"] == n_images, job
    results = server.get(f"/v1/jobs/{job['id']}/results").json()
    assert results["results"]["summary"]["processed"] == n_images
    assert results["report"]["summary"]["processed"] == n_images
    assert {r["source"] for r in results["results"]["images"]} == {
        p.name for p in (work / "roots" / "images").glob("*.jpg")
    }

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        name, data = _image(work, 1)
        zf.writestr(f"sub/{name}", data)
        zf.writestr("broken.png", "not an image")
    reply = server.upload("/v1/jobs", "archive", "images.zip", buf.getvalue())
    assert reply.status == 202, reply.body
    job = server.wait_job(reply.json()["id"])
    assert job["status"] == "done" and job["processed"] == 1 and job["cached"] == 1, job
    assert job["skipped"] == [
        {"source": "broken.png", "reason": "not an image (unknown file signature)"}
    ]

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../evil.png", b"x")
    assert server.upload("/v1/jobs", "archive", "e.zip", evil.getvalue()).status == 422
    assert server.upload("/v1/jobs", "archive", "e.zip", b"not a zip").status == 422
    listed = server.get("/v1/jobs").json()["jobs"]
    assert len(listed) == 2 and all("input_dir" not in j for j in listed)


def test_the_token_is_required_and_never_logged(server):
    assert server.get("/healthz", token=False).status == 200
    assert server.get("/", token=False).status == 200
    assert server.get("/v1/jobs", token=False).status == 401
    assert server.get("/metrics", token=False).status == 401
    wrong = server.get("/v1/jobs", token=False, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    cookie = server.get("/v1/jobs", token=False, headers={"Cookie": f"kiridashi_token={TOKEN}"})
    assert cookie.status == 200
    assert TOKEN not in server.log.read_text()


def test_binding_beyond_loopback_needs_a_token(tmp_path):
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "kiridashi.cli", "serve", "--host", "0.0.0.0"]
    cmd += ["--port", str(free_port())]
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: binding 0.0.0.0") and "token" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_page_works_in_headless_chromium_without_network(server, work):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("no chromium on this machine")
    name, data = _image(work)
    image = work / f"page_{name}"
    image.write_bytes(data)
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        context = browser.new_context()
        context.add_cookies([{"name": "kiridashi_token", "value": TOKEN, "url": server.base}])

        def only_this_server(route):
            if route.request.url.startswith(server.base) or route.request.url.startswith("blob:"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_this_server)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.base + "/")
        page.wait_for_selector("#health:has-text('ready')", timeout=30_000)
        page.set_input_files("#files", str(image))
        page.wait_for_selector("img.cutout", timeout=120_000)
        cutouts = page.eval_on_selector_all(
            "img.cutout", "els => els.map(e => [e.complete, e.naturalWidth])"
        )
        assert cutouts and all(done and width > 0 for done, width in cutouts)
        page.wait_for_function(
            "() => { const c = document.querySelector('canvas.overlay');"
            " return c && c.width > 0 && c.getContext('2d').getImageData(0, 0, c.width, c.height)"
            ".data.some((v, i) => i % 4 === 3 && v > 0); }",
            timeout=30_000,
        )  # the mask outline is drawn over the original
        assert page.locator(".card a[download='crops.zip']").count() == 1
        page.click("button[data-tab='jobs']")
        page.fill("#job-input", "images")
        page.click("#job-folder button")
        page.wait_for_selector("#jobs tbody tr progress", timeout=30_000)
        browser.close()
    assert not outside, outside
    assert not errors, errors


@pytest.mark.slow
def test_a_dying_worker_fails_one_request_with_503_and_the_server_carries_on(server, work):
    import threading

    from PIL import Image

    name, data = _image(work, 2)
    buf = io.BytesIO()
    img = Image.open(io.BytesIO(data))
    # new bytes (computed, not cached), and 3x larger so the task lasts seconds, not a moment
    img.resize((img.width * 3, img.height * 3)).save(buf, "JPEG", quality=83)
    answer: dict = {}
    thread = threading.Thread(
        target=lambda: answer.update(
            r=server.upload("/v1/extract", "image", f"x_{name}", buf.getvalue())
        )
    )
    thread.start()
    end = time.monotonic() + 60
    while not (busy := server.get("/healthz").json()["busy"]) and time.monotonic() < end:
        time.sleep(0.05)
    assert busy, "the upload never reached a worker"
    pid = busy[0]
    os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert answer["r"].status == 503, answer["r"].body
    health = server.wait_ready()
    assert health["pids"] and pid not in health["pids"]
    again = server.upload("/v1/extract", "image", name, _image(work, 0)[1])
    assert again.status == 200


@pytest.mark.slow
def test_an_unfinished_job_resumes_after_a_restart_reusing_the_cache(tmp_path):
    roots = tmp_path / "roots"
    _sample_images(roots / "batch")
    n = len(list((roots / "batch").glob("*.jpg")))
    env = _env(tmp_path)
    overrides = [f"serve.roots=[{roots}]"]
    srv = start_server(tmp_path, env, overrides)
    srv.wait_ready()
    job_id = srv.post_json("/v1/jobs", {"input": "batch"}).json()["id"]
    end = time.monotonic() + 300
    while srv.get(f"/v1/jobs/{job_id}").json()["done"] < 1 and time.monotonic() < end:
        time.sleep(0.2)
    srv.stop(signal.SIGKILL)  # mid-job, no clean shutdown
    srv = start_server(tmp_path, env, overrides)
    try:
        srv.wait_ready()
        job = srv.wait_job(job_id)
        assert job["status"] == "done" and job["resumed"] == 1 and job["done"] == n, job
        assert job["cached"] >= 1  # what the first server finished is not computed again
        results = srv.get(f"/v1/jobs/{job_id}/results").json()["results"]
        assert results["summary"]["processed"] == n
        assert results["summary"]["reused"] >= 1
    finally:
        srv.stop()


def test_a_folder_job_pairs_images_by_background_as_extract_does(server, work, tmp_path, cfg):
    """Background plates in a job: every image's detect step first, then each image is cut with
    its partners - the same partners and masks as `kiridashi extract`, detect counted once."""
    from kiridashi.pipeline import extract
    from tests.conftest import shared_path
    from tests.test_plates import ROOM

    src = shared_path("datasets", "dev2", "images")
    room = work / "roots" / "room"
    room.mkdir()
    for name in ROOM:
        for f in src.glob(f"{name}*.*"):
            shutil.copy(f, room / f.name)
    reply = server.post_json("/v1/jobs", {"input": "room"})
    assert reply.status == 202, reply.body
    job = server.wait_job(reply.json()["id"])
    assert job["status"] == "done" and job["processed"] == len(ROOM), job
    assert job["detected"] == len(ROOM), job  # the first pass's own progress
    results = server.get(f"/v1/jobs/{job['id']}/results").json()["results"]
    counts = results["summary"]["counts"]
    assert sum(counts["detect"].values()) == len(ROOM), counts
    doc = extract(room, tmp_path / "ex", cfg)
    ours = {r["source"]: r for r in results["images"]}
    for record in doc["images"]:
        got = ours[record["source"]]
        assert sorted(got["plate_partners"]) == sorted(record["plate_partners"]), record["source"]
        (out,) = work.rglob(f"{job['id']}/output")
        a = (out / got["mask"]).read_bytes()
        assert a == (tmp_path / "ex" / record["mask"]).read_bytes(), record["source"]
    assert len(ours[f"{ROOM[0]}.jpg"]["plate_partners"]) == 3
