"""The self-contained HTML dashboard of a unified quality report.

One file, no network: inline CSS and JS, thumbnails as base64 JPEG data URIs. Sections: summary
cards, a per-image table that sorts by any column (worst first: lowest IoU, then the most flags),
thumbnails with the ground-truth outline (green) and the predicted outline (magenta), the
face/pose overlay (red crosses: points outside the mask), no-reference flags with their reasons,
skipped files, unmatched ground truth, the metric history (inline SVG) and, for a training-set
export, its near-duplicate groups and the crops it left out. A legend explains the colours; a
click on a thumbnail shows it enlarged (Escape or a click closes it). Opening the page with
``#sort=COLUMN`` (or ``#sort=-COLUMN``, descending) sorts the table on load.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from kiridashi import io as kio
from kiridashi.overlay import COLOURS, draw_overlay

log = logging.getLogger(__name__)

THUMB_PX = 480  # shown at 140 px in the table, at full size when enlarged
CARDS = (
    ("mean_iou", "mean IoU"),
    ("mean_boundary_f", "boundary F"),
    ("mean_dice", "Dice"),
    ("min_iou", "worst IoU"),
    ("single_mean_iou", "IoU, one character"),
    ("single_mean_boundary_f", "boundary F, one character"),
    ("multi_mean_iou", "IoU, several characters"),
    ("character_recall", "character recall"),
    ("character_precision", "character precision"),
    ("face_detection_rate", "face rate"),
    ("pose_detection_rate", "pose rate"),
    ("pose_landmarks_inside", "pose points inside"),
    ("flagged_images", "flagged images"),
    ("processed", "processed"),
    ("skipped", "skipped"),
    ("scored", "scored"),
)
COLUMNS = ("iou", "dice", "boundary_f", "precision", "recall")
HISTORY_METRICS = ("mean_iou", "mean_boundary_f", "character_recall", "pose_detection_rate")
HISTORY_RUNS = 30  # the chart shows this many latest runs

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#666;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:110px}
.card b{display:block;font-size:20px}
.card span{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #eee;padding:6px 8px;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f0f0f0;position:sticky;top:0;user-select:none}
th:hover{background:#e4e4e4}
td.num{font-variant-numeric:tabular-nums}
td img{width:140px;border-radius:4px;display:block;cursor:zoom-in}
#zoom{position:fixed;inset:0;background:rgba(0,0,0,.8);display:flex;align-items:center;
justify-content:center;cursor:zoom-out;z-index:10}
#zoom[hidden]{display:none}
#zoom img{width:min(90vw,960px);height:auto;max-height:92vh;object-fit:contain;border-radius:6px}
.key{display:flex;flex-wrap:wrap;gap:6px 16px;font-size:12px;margin:0 0 10px;color:#444}
.swatch{display:inline-block;width:18px;height:4px;margin-right:5px;vertical-align:middle}
td.name{min-width:150px;max-width:220px;word-break:break-word}
td.flags{min-width:200px;max-width:280px}
.bad{color:#b00020;font-weight:600} .ok{color:#1b7f3a}
.flag{display:inline-block;background:#fde7e9;color:#8a1020;border-radius:4px;padding:0 5px;
margin:1px;font-size:12px}
.note{color:#666;font-size:12px}
svg{background:#fff;border:1px solid #ddd;border-radius:8px}
.legend span{margin-right:14px;font-size:12px}
.why{display:block;color:#8a1020;font-size:11px;margin-bottom:4px}
.group{display:flex;flex-wrap:wrap;gap:8px;background:#fff;border:1px solid #ddd;border-radius:8px;
padding:8px;margin:6px 0}
.group figure{margin:0;width:112px;font-size:11px;color:#666;word-break:break-word}
.group img{width:112px;height:112px;object-fit:contain;background:#ccc;border-radius:4px;
border:3px solid transparent} .group .kept img{border-color:#1b7f3a}
"""

JS = r"""
function sortTable(th){
  const table=th.closest('table'), idx=[...th.parentNode.children].indexOf(th);
  const asc=th.dataset.dir!=='asc'; th.dataset.dir=asc?'asc':'desc';
  const rows=[...table.tBodies[0].rows];
  rows.sort((a,b)=>{
    const x=a.cells[idx].dataset.v, y=b.cells[idx].dataset.v;
    const nx=parseFloat(x), ny=parseFloat(y);
    let c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));
    if(isNaN(nx)!==isNaN(ny)) c=isNaN(nx)?1:-1;
    return asc?c:-c;});
  rows.forEach(r=>table.tBodies[0].appendChild(r));
}
document.querySelectorAll('th').forEach(th=>th.addEventListener('click',()=>sortTable(th)));
const zoom=document.getElementById('zoom');
document.querySelectorAll('td img').forEach(img=>img.addEventListener('click',()=>{
  zoom.querySelector('img').src=img.src; zoom.querySelector('img').alt=img.alt; zoom.hidden=false;}));
zoom.addEventListener('click',()=>{zoom.hidden=true;});
document.addEventListener('keydown',e=>{if(e.key==='Escape') zoom.hidden=true;});
(function(){
  const m=/^#sort=(-?)([\w.]+)$/.exec(location.hash); if(!m) return;
  const th=document.querySelector(`th[data-key="${m[2]}"]`); if(!th) return;
  if(m[1]==='-') th.dataset.dir='asc';
  sortTable(th);
})();
"""


def _data_uri(rgb: np.ndarray, width: int = THUMB_PX) -> str:
    h, w = rgb.shape[:2]
    if w > width:
        rgb = cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80]
    )
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


def outline_thumbnail(
    rgb: np.ndarray, pred: np.ndarray | None, gt: np.ndarray | None
) -> np.ndarray:
    """``rgb`` with the GT outline (green) under the predicted outline (magenta)."""
    canvas = rgb.copy()
    thick = max(2, round(max(rgb.shape[:2]) / 300))
    for mask, colour in ((gt, (0, 220, 0)), (pred, (255, 0, 255))):
        if mask is not None and mask.any():
            contours, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(canvas, contours, -1, colour, thick)
    return canvas


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def _history_svg(history: list[dict], width: int = 720, height: int = 220) -> str:
    series = {m: [(i, r["metrics"].get(m)) for i, r in enumerate(history)] for m in HISTORY_METRICS}
    if len(history) < 1:
        return '<p class="note">No history yet: every evaluation adds a point.</p>'
    pad, colours = 36, ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    n = max(1, len(history) - 1)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = height - pad - t * (height - 2 * pad)
        parts.append(
            f'<line x1="{pad}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(f'<text x="4" y="{y + 4:.1f}" font-size="10" fill="#888">{t:.2f}</text>')
    legend = []
    for (name, points), colour in zip(series.items(), colours, strict=False):
        pts = [
            (pad + i / n * (width - pad - 10), height - pad - v * (height - 2 * pad))
            for i, v in points
            if isinstance(v, (int, float))
        ]
        if not pts:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pts]
        legend.append(f'<span style="color:{colour}">● {html.escape(name)}</span>')
    labels = [
        html.escape(str(r.get("label") or r.get("git_rev") or i)) for i, r in enumerate(history)
    ]
    for i, lab in enumerate(labels):
        x = pad + i / n * (width - pad - 10)
        anchor = "end" if i == len(labels) - 1 and i > 0 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="9" fill="#666" '
                     f'text-anchor="{anchor}">{lab[:10]}</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts) + f'<div class="legend">{"".join(legend)}</div>'


def _rgb(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def legend_html() -> str:
    """What the outline and overlay colours mean (the colours the drawings use)."""
    items = [
        ((0, 220, 0), "ground-truth outline"),
        ((255, 0, 255), "predicted outline (cut-out mask)"),
        ((255, 255, 0), "face box and face points"),
    ]
    chars = "".join(f'<span class="swatch" style="background:{_rgb(c)}"></span>' for c in COLOURS)
    parts = [
        f'<span><span class="swatch" style="background:{_rgb(c)}"></span>{text}</span>'
        for c, text in items
    ]
    parts.append(f"<span>{chars}character box and pose bones (one colour per character)</span>")
    parts.append('<span><b style="color:#ff0000">✕</b> point outside its character\'s mask</span>')
    parts.append("<span>click a picture to enlarge it</span>")
    return f'<div class="key" id="legend">{"".join(parts)}</div>'


def _image_row(entry: dict, report: dict, characters: dict) -> str:
    input_dir, output_dir = Path(report["input_dir"]), Path(report["output_dir"])
    thumb = overlay = ""
    outside_note = ""
    try:
        rgb = kio.load_image(input_dir / entry["source"]).rgb
        pred = kio.load_mask(output_dir / entry["mask"])[0] if entry.get("mask") else None
        gt = None
        if entry.get("gt"):
            gt_path = Path(entry["gt"])
            gt = kio.load_mask(gt_path if gt_path.is_absolute() else input_dir / gt_path)[0]
            gt = gt if gt.shape == rgb.shape[:2] else None
        thumb = _data_uri(outline_thumbnail(rgb, pred, gt))
        outside = {k: v for k, v in (entry.get("keypoints_outside") or {}).items() if v}
        chars = characters.get(entry["source"], [])
        listed = outside if entry.get("keypoints_outside") is not None else None
        overlay = _data_uri(draw_overlay(rgb, chars, pred, listed))
        outside_note = "; ".join(
            f"character {k}: {', '.join(n.split('.', 1)[-1] for n in names)}"
            for k, names in outside.items()
        )
        outside_note = f"outside the mask - {outside_note}" if outside_note else ""
    except (kio.BadInput, FileNotFoundError, OSError) as exc:
        outside_note = f"no preview: {exc}"
    m = entry.get("metrics") or {}
    cells = [
        f'<td class="name" data-v="{html.escape(entry["source"])}">{html.escape(entry["source"])}'
        f'<div class="note">{html.escape(entry.get("gt_note") or "")}</div></td>',
        f'<td data-v="0">{f"<img alt=outlines src={thumb!r}>" if thumb else "–"}</td>',
        f'<td data-v="0">{f"<img alt=overlay src={overlay!r}>" if overlay else "–"}</td>',
    ]
    for key in COLUMNS:
        v = m.get(key)
        cls = "bad" if isinstance(v, float) and v < 0.8 else "num"
        cells.append(f'<td class="{cls}" data-v="{"" if v is None else v}">{_fmt(v)}</td>')
    flags = "".join(
        f'<div><span class="flag" title="{html.escape(f.get("reason", ""))}">'
        f"{html.escape(f['check'])}</span>"
        f'<span class="why"> c{f.get("character")}: {html.escape(f.get("reason", ""))}</span></div>'
        for f in entry.get("flags", [])
    )
    cells.append(f'<td data-v="{entry.get("n_characters", 0)}">{entry.get("n_characters", 0)}</td>')
    face = "yes" if entry.get("face_found") else "no"
    cells.append(f'<td data-v="{face}">{face}</td>')
    pose = entry.get("pose") or {}
    pose_txt = f"{pose['with_pose']}/{pose['characters']}" if pose.get("characters") else "–"
    cells.append(f'<td data-v="{pose.get("with_pose", "")}">{pose_txt}</td>')
    n_out = sum(len(v) for v in (entry.get("keypoints_outside") or {}).values())
    cells.append(f'<td data-v="{n_out}">{n_out}</td>')
    cells.append(
        f'<td class="flags" data-v="{len(entry.get("flags", []))}">{flags}'
        f'<div class="note">{html.escape(outside_note)}</div></td>'
    )
    return f'<tr class="img-row">{"".join(cells)}</tr>'


GROUP_THUMB_PX = 112


def _crop_thumb(path: Path) -> str:
    """A data URI of a crop composited on mid-gray (its transparent parts visible as such)."""
    try:
        img = kio.load_image(path)
    except (kio.BadInput, OSError):
        return ""
    rgb = img.rgb.astype(np.float32)
    if img.alpha is not None:
        a = img.alpha.astype(np.float32)[:, :, None] / 255.0
        rgb = rgb * a + 204.0 * (1.0 - a)
    return _data_uri(rgb.round().astype(np.uint8), GROUP_THUMB_PX)


def _export_section(export: dict) -> str:
    """Near-duplicate groups (kept crop outlined green) and the crops the export left out."""
    out_dir = Path(export.get("results", ".")).parent
    s = export.get("summary", {})
    groups = []
    for g in export.get("groups", []):
        figures = "".join(
            f'<figure class="{"kept" if m["crop"] == g["kept"] else "dup"}">'
            f'<img alt="crop" src="{_crop_thumb(out_dir / m["crop"])}">'
            f"{html.escape(m['crop'].split('/', 1)[-1])}<br>"
            f"{'kept' if m['crop'] == g['kept'] else str(m['distance']) + ' bits'}</figure>"
            for m in g["members"]
        )
        groups.append(f'<div class="group">{figures}</div>')
    dropped = "".join(
        f"<li>{html.escape(d['crop'])}: {html.escape('; '.join(d['reasons']))}</li>"
        for d in export.get("dropped", [])
    )
    return (
        f"<h2>Training-set export: {s.get('kept', 0)} of {s.get('crops', 0)} crops kept "
        f"({html.escape(str(export.get('format')))}, {html.escape(str(export.get('folder')))})</h2>"
        f"<h3>Near-duplicate groups ({len(groups)}; green: the crop kept)</h3>"
        f'<div id="dedup-groups">{"".join(groups) or "<p class=note>none</p>"}</div>'
        f"<h3>Left out ({s.get('dropped', 0)})</h3>"
        f'<ul id="export-dropped">{dropped or "<li>none</li>"}</ul>'
    )


def render_dashboard(
    report: dict, history: list[dict] | None = None, export: dict | None = None
) -> str:
    """The dashboard HTML for ``report`` (a unified quality report dict); ``export``: an
    ``export_report.json`` whose groups and left-out crops get their own section."""
    characters: dict[str, list] = {}
    try:
        results = kio.read_json(Path(report["results"]))
        characters = {r["source"]: r.get("characters", []) for r in results["images"]}
    except (OSError, KeyError, ValueError) as exc:
        log.warning("dashboard: no keypoints (%s)", exc)
    s = report["summary"]
    cards = "".join(
        f'<div class="card"><b>{_fmt(s.get(k))}</b><span>{label}</span></div>' for k, label in CARDS
    )
    images = [e for e in report["images"] if e.get("status") == "ok"]
    images.sort(  # worst first: lowest IoU, then (unscored) the most flags
        key=lambda e: ((e.get("metrics") or {}).get("iou", 2.0), -len(e.get("flags", [])))
    )
    keys = ("image", "outlines", "overlay", *COLUMNS, "characters", "face", "pose",
            "outside", "flags")  # fmt: skip
    titles = ("image", "GT / predicted", "face / pose overlay", *COLUMNS, "characters", "face",
              "pose", "points outside", "flags")  # fmt: skip
    head = "".join(f'<th data-key="{k}">{t}</th>' for k, t in zip(keys, titles, strict=True))
    rows = "".join(_image_row(e, report, characters) for e in images)
    skipped = "".join(
        f"<li>{html.escape(k['source'])}: {html.escape(k.get('reason') or '')}</li>"
        for k in report.get("skipped", [])
    )
    unmatched = "".join(f"<li>{html.escape(g)}</li>" for g in report.get("unmatched_gt", []))
    title = f"kiridashi quality — {html.escape(report.get('output_dir', ''))}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head><body>
<h1>kiridashi quality report</h1>
<div class="meta">output {html.escape(report.get("output_dir", ""))} · input
{html.escape(report.get("input_dir", ""))} · params {html.escape(str(report.get("params_digest")))}</div>
<div class="cards" id="summary">{cards}</div>
<h2>Images (worst first; click a column to sort)</h2>
{legend_html()}
<table id="images"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
<h2>Skipped ({len(report.get("skipped", []))})</h2><ul id="skipped">{skipped or "<li>none</li>"}</ul>
<h2>Ground truth without an image ({len(report.get("unmatched_gt", []))})</h2>
<ul>{unmatched or "<li>none</li>"}</ul>
<h2>History</h2><div id="history">{_history_svg(history or [])}</div>
<div id="zoom" hidden><img alt="enlarged"></div>
{_export_section(export) if export else ""}
<script>{JS}</script>
<script type="application/json" id="report-summary">{html.escape(json.dumps(s))}</script>
</body></html>
"""


def write_dashboard(
    report: dict, path: Path, history: list[dict] | None = None, export: dict | None = None
) -> None:
    """Write the dashboard atomically to ``path``."""
    kio.atomic_write_text(Path(path), render_dashboard(report, history, export))
