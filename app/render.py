"""What the UI draws: the annotated preview, modality badges, the timeline, exports.

Pure functions of session data (no Gradio here), so they are testable without a browser.  Window
results come in as :class:`app.window.WindowResult`; the exports are where they become JSON/CSV.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from admc.outdir import atomic_write_text

if TYPE_CHECKING:
    from app.window import WindowResult

MOD_NAMES = {"A": "audio", "V": "face", "T": "text"}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
STATE_COLORS = {"live": "#2e9d48", "ood": "#b5533c", "imputed": "#e08a00", "missing": "#9a9a9a"}


# ------------------------------------------------------------------------------------------ preview
def annotate(frame, face, label: str | None = None):
    """The frame with the face box and 5 landmarks drawn (a copy); garbage frames pass through."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.dtype != np.uint8:
        return frame
    if face is None or not getattr(face, "detected", False) or face.box is None:
        return frame
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
    d = ImageDraw.Draw(img)
    sx = sy = 1.0   # box and landmarks are in the pixels of this (capped) frame
    x1, y1, x2, y2 = (float(v) for v in face.box)
    box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    lw = max(2, frame.shape[1] // 240)
    d.rectangle(box, outline=(46, 157, 72), width=lw)
    if face.landmarks is not None:
        r = max(2, frame.shape[1] // 200)
        for x, y in np.asarray(face.landmarks).reshape(-1, 2):
            x, y = x * sx, y * sy
            d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 200, 0))
    text = f"{float(face.score):.2f}" + (f"  {label}" if label else "")
    d.text((box[0] + 3, max(0, box[1] - 12)), text, fill=(46, 157, 72))
    return np.asarray(img)


# ------------------------------------------------------------------------------------------ badges
def shown_label(result: WindowResult | None) -> str | None:
    """What the UI names a window: its emotion, "uncertain" when the checkpoint does not trust it
    (its ``label`` is then null), None without a prediction."""
    if result is None or not result.predicted:
        return None
    return "uncertain" if result.uncertain else result.label


def modality_state(result: WindowResult | None, mod: str) -> str:
    """``live``; ``ood``: delivered but unlike the training data, so completed instead (never shown
    as live); ``imputed``: missing and completed; ``missing``."""
    if result is None or mod not in result.streams:
        return "missing"
    if result.streams[mod] == "live":
        return "ood" if result.out_of_distribution(mod) else "live"
    return "imputed" if mod in result.imputed else "missing"


def badges_html(result: WindowResult | None, mods=("A", "V", "T"), full: str | None = None,
                completer: str = "ADN") -> str:
    """One badge per modality: live / missing (reason) / completed (by ``completer``: what the
    checkpoint's completer computes, :attr:`app.checkpoint.Checkpoint.completer_label`); ``full``: why
    no live session could be opened for this page (the server's or the login's limit), shown instead."""
    if full:
        return (f'<div class="admc-full" data-state="full" style="padding:6px 10px;border-radius:8px;'
                f'background:#b3261e;color:white;font-weight:600">{html.escape(full)}</div>')
    parts = []
    for m in mods:
        state = modality_state(result, m)
        reason = "waiting for the stream" if result is None else result.reasons.get(m, "waiting for the stream")
        r = html.escape(str(reason))
        by = html.escape(completer)
        text = {"live": "live", "imputed": f"missing ({r}) &mdash; completed by {by}",
                "ood": f"unlike training &mdash; completed by {by}", "missing": f"missing ({r})"}[state]
        ood = None if result is None else result.ood.get(m)
        if state == "ood":
            r = html.escape(f"out of distribution (score {ood.score:.1f})")
        parts.append(
            f'<span class="admc-badge admc-{state}" data-mod="{m}" data-state="{state}" '
            f'data-ood="{int(ood is not None and ood.out)}" title="{r}" '
            f'style="display:inline-block;margin:2px 6px 2px 0;padding:4px 10px;border-radius:12px;'
            f'color:white;background:{STATE_COLORS[state]};font-weight:600">{m} {MOD_NAMES.get(m, m)}: {text}</span>')
    if result is not None and result.uncertain:
        parts.append('<span class="admc-uncertain" data-state="uncertain" '
                     'title="out of distribution or below the checkpoint\'s confidence threshold" '
                     'style="display:inline-block;margin:2px 6px 2px 0;padding:4px 10px;border-radius:12px;'
                     'color:white;background:#7a4fa3;font-weight:700">uncertain</span>')
    t = None if result is None else result.t
    stamp = f'<span class="admc-t" data-t="{t}" style="color:#888;font-size:0.85em">t = {t:.1f} s</span>' \
        if t is not None else '<span class="admc-t" data-t="" style="color:#888">waiting for camera / microphone</span>'
    imputed = [] if result is None else result.imputed
    marker = (f'<span class="admc-imputed-marker" data-imputed="{"".join(imputed)}" '
              f'style="margin-left:8px;color:#e08a00;font-weight:700">&#9679; completing {"+".join(imputed)}</span>'
              if imputed else "")
    return f'<div class="admc-badges">{"".join(parts)}<br>{stamp}{marker}</div>'


NO_INPUT = "no input: camera, microphone and transcript are all missing"


def probs_label(result: WindowResult | None) -> dict[str, float] | str | None:
    """The emotion component's value: the class probabilities, the text "uncertain" instead of
    them when the checkpoint does not trust the window, or :data:`NO_INPUT` when every stream is
    missing (nothing to predict from)."""
    if result is None:
        return None
    if not result.predicted:
        streams = result.streams
        return NO_INPUT if streams and all(v != "live" for v in streams.values()) else None
    if result.uncertain:
        return "uncertain"
    return {k: float(v) for k, v in result.probs.items()}


# ------------------------------------------------------------------------------------------ timeline
def timeline_svg(results: list[WindowResult], classes: list[str], span: float = 30.0, width: int = 640,
                 height: int = 220, mods=("A", "V", "T")) -> str:
    """Rolling plot of class probabilities over the last ``span`` s; spans with an imputed
    modality are shaded, and one lane per modality shows live / imputed / missing."""
    lane_h, gap = 9, 3
    lanes_h = len(mods) * (lane_h + gap)
    top, left, right = 8, 34, 8
    plot_h = height - top - lanes_h - 22
    if not results:
        return (f'<svg class="admc-timeline" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
                f'<text x="{left}" y="{height / 2}" fill="#888">no results yet</text></svg>')
    t_end = float(results[-1].t)
    t0 = max(0.0, t_end - span)
    rs = [r for r in results if r.t >= t0]
    span = max(min(span, t_end - t0), 10.0)       # fill the width from the start; then roll
    pw = width - left - right
    hop = 0.2
    if len(rs) > 1:
        hop = max(0.05, min(1.0, (rs[-1].t - rs[0].t) / (len(rs) - 1)))

    def X(t):
        return left + (t - t0) / max(span, 1e-6) * pw

    def Y(p):
        return top + (1.0 - p) * plot_h

    out = [f'<svg class="admc-timeline" width="100%" height="{height}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg" style="background:white;font-family:sans-serif;font-size:10px">']
    # shading: windows with imputed modalities (orange, darker the more are completed by the
    # ADN), windows without any prediction (grey)
    for r in rs:
        x = X(r.t - hop)
        w = max(1.0, X(r.t) - x + 0.3)
        if not r.predicted:
            out.append(f'<rect class="admc-nopred" x="{x:.1f}" y="{top}" width="{w:.1f}" height="{plot_h}" fill="#ddd"/>')
        elif r.imputed:
            op = 0.08 * len(r.imputed)
            out.append(f'<rect class="admc-imputed-span" x="{x:.1f}" y="{top}" width="{w:.1f}" height="{plot_h}" '
                       f'fill="#e08a00" fill-opacity="{op:.2f}"/>')
    # axes
    out.append(f'<line x1="{left}" y1="{Y(0)}" x2="{left + pw}" y2="{Y(0)}" stroke="#999"/>')
    for p in (0.0, 0.5, 1.0):
        out.append(f'<text x="2" y="{Y(p) + 3:.1f}" fill="#666">{p:.1f}</text>')
        out.append(f'<line x1="{left}" y1="{Y(p):.1f}" x2="{left + pw}" y2="{Y(p):.1f}" stroke="#eee"/>')
    # class lines (broken where there is no prediction)
    for ci, c in enumerate(classes):
        col = COLORS[ci % len(COLORS)]
        seg: list[str] = []
        segs = []
        for r in rs:
            p = r.probs.get(c)
            if p is None:
                if seg:
                    segs.append(seg)
                seg = []
                continue
            seg.append(f"{X(r.t):.1f},{Y(float(p)):.1f}")
        if seg:
            segs.append(seg)
        for s in segs:
            if len(s) == 1:
                x, y = s[0].split(",")
                out.append(f'<circle cx="{x}" cy="{y}" r="1.5" fill="{col}"/>')
            else:
                out.append(f'<polyline class="admc-line" data-class="{html.escape(c)}" points="{" ".join(s)}" '
                           f'fill="none" stroke="{col}" stroke-width="1.6"/>')
    # modality lanes
    y0 = top + plot_h + 6
    for mi, m in enumerate(mods):
        y = y0 + mi * (lane_h + gap)
        out.append(f'<text x="2" y="{y + lane_h - 1}" fill="#444">{m}</text>')
        for r in rs:
            st = modality_state(r, m)
            x = X(r.t - hop)
            w = max(1.0, X(r.t) - x + 0.3)
            out.append(f'<rect class="admc-lane-{st}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane_h}" '
                       f'fill="{STATE_COLORS[st]}"/>')
    # time axis + legend
    yt = height - 4
    out.append(f'<text x="{left}" y="{yt}" fill="#666">{t0:.0f} s</text>')
    out.append(f'<text x="{left + pw - 30}" y="{yt}" fill="#666">{t0 + span:.0f} s</text>')
    lx = left + 60
    for ci, c in enumerate(classes[:8]):
        col = COLORS[ci % len(COLORS)]
        out.append(f'<rect x="{lx}" y="{yt - 7}" width="8" height="8" fill="{col}"/>'
                   f'<text x="{lx + 11}" y="{yt}" fill="#333">{html.escape(c)}</text>')
        lx += 14 + 6 * len(c)
    out.append(f'<rect x="{lx + 6}" y="{yt - 7}" width="8" height="8" fill="#e08a00" fill-opacity="0.4"/>'
               f'<text x="{lx + 17}" y="{yt}" fill="#333">completed</text>')
    out.append("</svg>")
    return "".join(out)


def perf_html(stats: dict) -> str:
    def f(v, unit=""):
        return "&ndash;" if v is None else f"{v}{unit}"

    return (f'<div class="admc-perf" data-preview-fps="{stats.get("preview_fps")}" '
            f'data-predictions="{stats.get("predictions_per_s")}" style="font-family:monospace">'
            f'window latency p50 {f(stats.get("latency_p50_ms"), " ms")} / p95 {f(stats.get("latency_p95_ms"), " ms")}'
            f' &middot; preview {f(stats.get("preview_fps"), " fps")} &middot; face tracking '
            f'{f(stats.get("face_fps"), " fps")} &middot; {f(stats.get("predictions_per_s"), " predictions/s")}</div>')


def provenance_md(prov: dict) -> str:
    """A short header (checkpoint name, training data, classes, model card link); the path,
    fingerprint, feature set, method and command behind a details toggle."""
    from html import escape

    ds = prov.get("dataset") or {}
    name = Path(str(prov.get("path") or "checkpoint")).name
    data = f" &middot; trained on `{ds['name']}`" if ds.get("name") else ""
    card = prov.get("model_card")
    if card:
        target = card if str(card).startswith(("http://", "https://")) else f"/gradio_api/file={card}"
        card_md = f"[model card]({target})"
    else:
        card_md = "no model card"
    head = (f"**Checkpoint** `{name}`{data} &middot; {len(prov.get('classes', []))} classes: "
            f"{', '.join(prov.get('classes', []))} &middot; {card_md}")
    rows = [("path", prov.get("path")), ("method", prov.get("method")),
            ("feature set", ds.get("feature_set")), ("dataset path", ds.get("path")),
            ("fingerprint", ds.get("fingerprint")), ("note", ds.get("note")),
            ("command", prov.get("command")), ("admc", prov.get("admc_version"))]
    items = "".join(f"<li>{k}: <code>{escape(str(v))}</code></li>" for k, v in rows if v)
    return head + f"\n\n<details><summary>Details</summary><ul>{items}</ul></details>"


# ------------------------------------------------------------------------------------------ export
def export_json(results: list[WindowResult], path: str | Path) -> Path:
    """The windows as one JSON list of their contract dicts (:meth:`WindowResult.to_dict`)."""
    path = Path(path)
    atomic_write_text(path, json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    return path


def export_csv(results: list[WindowResult], classes: list[str], path: str | Path, mods=("A", "V", "T")) -> Path:
    """One row per analysis window: t, label, per-class probabilities, per-modality state and
    reason, imputed, transcript, latency, uncertain (0/1), then per modality whether it was out of
    distribution (``<m>_ood``: 1/0, empty when absent) and its score (``<m>_ood_score``)."""
    path = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["t", "label"] + [f"p_{c}" for c in classes]
               + [f"{m}_stream" for m in mods] + [f"{m}_reason" for m in mods]
               + ["imputed", "transcript", "latency_ms", "uncertain"]
               + [f"{m}_ood" for m in mods] + [f"{m}_ood_score" for m in mods])
    for r in results:
        ood = [r.ood.get(m) for m in mods]
        w.writerow([r.t, r.label or ""] + [("" if c not in r.probs else f"{r.probs[c]:.6f}") for c in classes]
                   + [r.streams.get(m, "") for m in mods] + [r.reasons.get(m, "") for m in mods]
                   + ["+".join(r.imputed), r.transcript or "", r.latency_ms, int(bool(r.uncertain))]
                   + ["" if o is None else int(bool(o.out)) for o in ood]
                   + ["" if o is None else f"{float(o.score):.3f}" for o in ood])
    atomic_write_text(path, buf.getvalue())
    return path
