// kiridashi web page: upload images to /v1/extract, show the cut-outs; jobs with progress.
// Self-contained: talks only to this server.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};

async function api(url, options = {}) {
  const resp = await fetch(url, { credentials: "same-origin", ...options });
  if (resp.status === 401) $("#token-box").hidden = false;
  return resp;
}

async function detail(resp) {
  try { return (await resp.json()).detail || resp.statusText; } catch { return resp.statusText; }
}

// -- health -----------------------------------------------------------------------------------
async function health() {
  try {
    const h = await (await fetch("/healthz")).json();
    $("#health").textContent = h.ready >= h.workers ? `ready (${h.workers} worker${h.workers > 1 ? "s" : ""})`
      : h.error ? `error: ${h.error}` : `loading models (${h.ready}/${h.workers})`;
  } catch { $("#health").textContent = "server unreachable"; }
}

// -- token ------------------------------------------------------------------------------------
$("#token-save").addEventListener("click", () => {
  document.cookie = `kiridashi_token=${encodeURIComponent($("#token").value)}; path=/; SameSite=Strict`;
  $("#token-box").hidden = true;
});

// -- tabs -------------------------------------------------------------------------------------
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    $("#tab-extract").hidden = tab.dataset.tab !== "extract";
    $("#tab-jobs").hidden = tab.dataset.tab !== "jobs";
    if (tab.dataset.tab === "jobs") refreshJobs();
  });
}

// -- images -----------------------------------------------------------------------------------
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  upload([...e.dataTransfer.files]);
});
$("#files").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });

async function upload(files) {
  for (const file of files) {
    const card = el("div", { class: "card" }, el("h2", {}, file.name), el("p", { class: "meta" }, "cutting out…"));
    $("#results").prepend(card);
    const body = new FormData();
    body.append("image", file, file.name);
    try {
      const resp = await api("/v1/extract", { method: "POST", body });
      if (!resp.ok) { showError(card, file.name, `${resp.status}: ${await detail(resp)}`); continue; }
      showResult(card, file, await resp.json());
    } catch (err) { showError(card, file.name, String(err)); }
  }
}

function showError(card, name, text) {
  card.replaceChildren(el("h2", {}, name), el("p", { class: "error" }, text));
}

function showResult(card, file, rec) {
  const flagsOf = (k) => (rec.flags || []).filter((f) => f.character === k);
  const original = el("div", { class: "original" });
  const img = el("img", { alt: "original", class: "original-image" });
  const canvas = el("canvas", { class: "overlay" });
  original.append(img, canvas);
  img.onload = () => drawOverlay(canvas, rec, img.naturalWidth, img.naturalHeight);
  img.src = URL.createObjectURL(file);
  const crops = el("div", { class: "crops" });
  for (const ch of rec.characters) {
    const flags = flagsOf(ch.index);
    crops.append(el("div", { class: "crop" },
      el("div", { class: "checker" }, el("img", { src: ch.crop_url, alt: `character ${ch.index}`, class: "cutout" })),
      el("div", { class: "meta" }, `#${ch.index} score ${ch.score} · ${ch.detectors.join(", ")}`),
      flags.length ? el("ul", { class: "flags" }, ...flags.map((f) => el("li", {}, `${f.check}: ${f.reason}`)))
        : el("div", { class: "ok" }, "no quality flags"),
      el("a", { href: ch.crop_url, download: `${file.name.replace(/\.[^.]+$/, "")}_c${ch.index}.png` }, "download")));
  }
  if (!rec.characters.length) crops.append(el("p", { class: "meta" }, "no character found"));
  const head = el("h2", {}, file.name, " ",
    el("span", { class: rec.cached ? "badge cached" : "badge" }, rec.cached ? "from the cache" : "computed"));
  const links = rec.characters.length ? el("a", { href: rec.zip_url, download: "crops.zip" }, "download all (zip)") : "";
  const meta = el("p", { class: "meta" }, `${rec.size[0]}×${rec.size[1]} · ${rec.characters.length} character(s) · `, links);
  card.replaceChildren(head, meta, el("div", { class: "pair" }, original, crops));
}

// the mask's outline (from mask_url) and the face boxes and face/pose points over the original
function drawOverlay(canvas, rec, w, h) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const mask = new Image();
  mask.onload = () => {
    const off = document.createElement("canvas");
    off.width = w; off.height = h;
    const octx = off.getContext("2d");
    octx.drawImage(mask, 0, 0, w, h);
    const src = octx.getImageData(0, 0, w, h).data;
    const out = ctx.createImageData(w, h);
    const on = (x, y) => src[(y * w + x) * 4] > 127;
    const t = Math.max(1, Math.round(Math.max(w, h) / 600));
    for (let y = t; y < h - t; y++) {
      for (let x = t; x < w - t; x++) {
        if (on(x, y) && (!on(x - t, y) || !on(x + t, y) || !on(x, y - t) || !on(x, y + t))) {
          const i = (y * w + x) * 4;
          out.data[i] = 0; out.data[i + 1] = 255; out.data[i + 2] = 80; out.data[i + 3] = 255;
        }
      }
    }
    ctx.putImageData(out, 0, 0);
    drawPoints(ctx, rec, w);
  };
  mask.src = rec.mask_url;
}

function drawPoints(ctx, rec, w) {
  const r = Math.max(2, w / 300);
  ctx.lineWidth = Math.max(1, w / 500);
  for (const ch of rec.characters) {
    if (ch.face_box) {
      const [x0, y0, x1, y1] = ch.face_box;
      ctx.strokeStyle = "#ff3b7f"; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
    for (const [name, p] of Object.entries(ch.keypoints || {})) {
      if (p.length > 2 && p[2] < 0.3) continue;
      ctx.fillStyle = name.startsWith("pose.") ? "#ffd400" : "#00c8ff";
      ctx.beginPath(); ctx.arc(p[0], p[1], r, 0, 2 * Math.PI); ctx.fill();
    }
  }
}

// -- jobs -------------------------------------------------------------------------------------
let jobsTimer = null;

$("#job-folder").addEventListener("submit", async (e) => {
  e.preventDefault();
  const resp = await api("/v1/jobs", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ input: $("#job-input").value }),
  });
  $("#job-error").textContent = resp.ok ? "" : `${resp.status}: ${await detail(resp)}`;
  refreshJobs();
});

$("#job-zip").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = new FormData();
  body.append("archive", $("#job-archive").files[0]);
  const resp = await api("/v1/jobs", { method: "POST", body });
  $("#job-error").textContent = resp.ok ? "" : `${resp.status}: ${await detail(resp)}`;
  refreshJobs();
});

async function refreshJobs() {
  clearTimeout(jobsTimer);
  const resp = await api("/v1/jobs");
  if (!resp.ok) return;
  const { jobs } = await resp.json();
  const rows = jobs.reverse().map((j) => {
    const total = j.total ?? 0;
    const bar = el("progress", { max: Math.max(1, total), value: j.done });
    const skipped = j.skipped.length ? ` · ${j.skipped.length} skipped` : "";
    // a job over images that share backgrounds finds every image's characters first
    const finding = j.status === "running" && j.detected != null && j.detected < total && !j.done
      ? ` · finding characters ${j.detected}/${total}` : "";
    const actions = j.status === "done"
      ? el("a", { href: `/v1/jobs/${j.id}/results`, target: "_blank" }, "results")
      : ["queued", "running"].includes(j.status)
        ? el("button", { onclick: async () => { await api(`/v1/jobs/${j.id}`, { method: "DELETE" }); refreshJobs(); } }, "cancel")
        : "";
    return el("tr", { "data-job": j.id },
      el("td", {}, j.id), el("td", {}, j.input), el("td", { class: "status" }, j.status),
      el("td", {}, bar, ` ${j.done}/${total}${skipped}${finding}`), el("td", {}, actions));
  });
  $("#jobs tbody").replaceChildren(...rows);
  if (jobs.some((j) => ["queued", "running"].includes(j.status)) && !$("#tab-jobs").hidden) {
    jobsTimer = setTimeout(refreshJobs, 1000);
  }
}

health();
setInterval(health, 5000);
