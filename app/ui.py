"""The Gradio Blocks UI: a thin layer over :class:`app.session.LiveSession`.

One LiveSession per browser session (threaded: the stream handlers only hand frames and audio
over, a ticker analyses a window every 200 ms), all sharing the loaded checkpoint and extractors.
With ``--source local`` one session is fed by this machine's camera and microphone and every
browser shows it.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import weakref
from pathlib import Path

import gradio as gr
import numpy as np

from app import camera_rtc
from app.engine import (LOCAL, MAX_SESSIONS, MAX_SESSIONS_PER_USER, Engine, SessionLimit, checkpoint_controls,
                        session_key)
from app.session import SessionConfig
from app.uplink import PAGE_JS, AudioUplink, token_html
from app.render import (annotate, badges_html, export_csv, export_json, perf_html, probs_label,
                        provenance_md, shown_label, timeline_svg)

UI_REFRESH_S = 0.5          # transcript / timeline / performance line refresh
WINDOW_REFRESH_S = 0.2      # badges and emotion with --source local (the preview with them)
WINDOW_PUSH_CHECK_S = 0.02  # a page's window stream looks for a new window this often
PUSH_STREAMS_PER_SESSION = 2  # window streams at once per admitted session (reloads, waiting pages)
STREAM_STALE_S = 2.0        # a window stream that has not looked this long is gone
WINDOW_POLL_FALLBACK_S = 1.0  # a page without a window stream is refreshed this often
PREVIEW_FPS = 5.0           # annotated previews sent back per second (half size beyond 480 px wide); every
#                             frame still goes to the analysis
WEBCAM_MAX_FPS = 30.0       # the most webcam frames the page sends a second (the camera's rate)


def webcam_every_s(face_fps: float | None) -> float:
    """How often the page sends a webcam frame: as many a second as the face path takes (its cap),
    at most the camera's rate."""
    return 1.0 / min(face_fps or WEBCAM_MAX_FPS, WEBCAM_MAX_FPS)


CSS = """
#admc-badges .admc-badge {font-size: 0.95em}
#admc-title {margin-bottom: 0}
"""

THRESHOLDS = (  # HealthConfig field, label, min, max, step
    ("v_min_score", "face: min detection score", 0.5, 1.0, 0.01),
    ("v_min_expression_conf", "face: min expression confidence", 0.0, 0.6, 0.01),
    ("vad_on", "audio: VAD speech threshold", 0.1, 0.95, 0.01),
    ("a_min_silence_s", "audio: silence before the speech gate turns off (s)", 0.1, 3.0, 0.1),
    ("a_hold_s", "voice: stays live after speech (s)", 0.1, 10.0, 0.1),
    ("t_logprob", "text: min ASR avg log-prob", -3.0, 0.0, 0.1),
)


class SessionGuard:
    """ASGI middleware: with a login, a session's heartbeat (whose end closes the session) is answered
    only for the logged-in user who holds that session; an unauthenticated or other user's request
    for it is refused (401 / 403) and closes nothing."""

    def __init__(self, app, engine: "Engine"):
        self.app, self.engine = app, engine

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http" and "/heartbeat/" in scope.get("path", ""):
            gr_app = scope.get("app")
            if getattr(gr_app, "auth", None) is not None:
                from starlette.responses import PlainTextResponse

                user = login_of(scope)
                session = scope["path"].rstrip("/").rpartition("/")[2]
                holder = self.engine.owner(session)
                if user is None:
                    await PlainTextResponse("Not authenticated", status_code=401)(scope, receive, send)
                    return
                if holder is not None and holder != user:
                    await PlainTextResponse("Not your session", status_code=403)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def login_of(scope) -> str | None:
    """The login of an HTTP request to the Gradio app (None: not logged in, or no --auth)."""
    gr_app = scope.get("app")
    if getattr(gr_app, "auth", None) is None:
        return None
    from starlette.requests import Request

    cookies = Request(scope).cookies
    token = (cookies.get(f"access-token-{gr_app.cookie_id}")
             or cookies.get(f"access-token-unsecure-{gr_app.cookie_id}"))
    return gr_app.tokens.get(token) if token else None


def page_preview(s, frame):
    """What the page's preview shows of ``frame``: the face box, landmarks and shown label of session
    ``s`` drawn on it, at half size beyond 480 px wide (a view, not the analysis)."""
    label = shown_label(s.results[-1]) if s.results else None
    img = annotate(frame, s.preview_face(), label)
    return img[::2, ::2] if isinstance(img, np.ndarray) and img.shape[1] > 480 else img


def build_ui(engine: Engine, camera: str = "stream", feeds=None):
    """The page.  ``camera``: how the page's camera reaches the server, ``"webrtc"`` (its video
    track, :mod:`app.camera_rtc`, whose ``feeds`` it goes into; Gradio's camera only when the page
    falls back) or ``"stream"`` (Gradio's streaming image, a JPEG per frame)."""
    ck = engine.ck
    local = engine.local is not None
    classes = ck.classes
    has_intent = "intent" in ck.heads
    adn = ck.model.cfg.adn
    default_n = ck.meta.get("start_step") or adn.start_step or 0     # the run's own n (run.json), not the live model's

    with gr.Blocks(title="ADMC live emotion") as demo:
        gr.Markdown("## ADMC live emotion recognition &mdash; keeps going when a stream drops out",
                    elem_id="admc-title")
        prov = gr.Markdown(provenance_md(ck.provenance()), elem_id="admc-provenance")
        with gr.Row():
            with gr.Column(scale=5):
                if not local and camera == "webrtc":
                    with gr.Column(elem_id="admc-rtc-camera"):
                        gr.HTML(camera_rtc.CAMERA_HTML, elem_id="admc-rtc-box")
                        with gr.Row():
                            cam_btn = gr.Button("Start / stop camera", elem_id="admc-cam-toggle", scale=1)
                            gr.HTML('<span id="admc-cam-status">Camera: off</span>', scale=2)
                if not local:
                    with gr.Column(elem_id="admc-webcam-fallback"):
                        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                                       elem_id="admc-webcam", height=300,
                                       webcam_options=gr.WebcamOptions(mirror=False, constraints={
                                           "video": {"width": {"ideal": 640, "max": 640},
                                                     "height": {"ideal": 480, "max": 480},
                                                     "frameRate": {"ideal": 20, "max": 30}}}))
                # (20: the rate the page sends; asking for 30 was slower in the browser benchmark)
                preview = gr.Image(label="Preview: face box and landmarks", streaming=not local, format="jpeg",
                                   elem_id="admc-preview", height=300, interactive=False)
                if not local:
                    with gr.Row(elem_id="admc-mic"):
                        mic_btn = gr.Button("Start / stop microphone", elem_id="admc-mic-toggle", scale=1)
                        gr.HTML('<span id="admc-mic-status">Microphone: off</span>', scale=2)
                    uplink = gr.HTML(token_html(None), elem_id="admc-uplink", visible="hidden")
                else:
                    gr.Markdown(f"Source: {engine.local.describe()}")
            with gr.Column(scale=6):
                badges = gr.HTML(badges_html(None), elem_id="admc-badges")
                emotion = gr.Label(label="Emotion", elem_id="admc-emotion")   # every class of the loaded checkpoint
                intent = gr.Label(label="Intent", visible=has_intent, elem_id="admc-intent")
                transcript = gr.Textbox(label="Transcript", lines=2, interactive=False, elem_id="admc-transcript")
                timeline = gr.HTML(timeline_svg([], classes), elem_id="admc-timeline")
                perf = gr.HTML(perf_html({}), elem_id="admc-perf")
        with gr.Accordion("Controls", open=False):
            with gr.Row():
                ck_name = gr.Dropdown(choices=list(engine.choices), value=engine.default_name,
                                      label="Checkpoint (this session)", allow_custom_value=False,
                                      elem_id="admc-checkpoint", scale=4)
                ck_btn = gr.Button("Load checkpoint", scale=1, elem_id="admc-load-checkpoint")
            ck_msg = gr.Markdown()
            acts = checkpoint_controls(ck)
            with gr.Row():                   # only the controls that act on the loaded checkpoint
                n_step = gr.Slider(0, adn.num_train_timesteps, value=default_n, step=1,
                                   label="Diffusion start step n (0 = checkpoint's)", visible=acts["start_step"],
                                   elem_id="admc-start-step")
                mmer = gr.Checkbox(value=acts["mmer"], label="MMER enhancement", visible=acts["mmer"],
                                   elem_id="admc-mmer")
            hc = engine.make_config().health          # the server's settings (--voice-hold included)
            sliders = []
            with gr.Row():
                for field, label, lo, hi, st in THRESHOLDS:
                    sliders.append(gr.Slider(lo, hi, value=getattr(hc, field), step=st, label=label))
        with gr.Row():
            rec_btn = gr.Button("Start recording", elem_id="admc-record")
            stop_btn = gr.Button("Stop recording", elem_id="admc-stop")
            csv_btn = gr.Button("Export CSV", elem_id="admc-export-csv")
            json_btn = gr.Button("Export JSON", elem_id="admc-export-json")
        rec_msg = gr.Markdown(elem_id="admc-rec-msg")
        export_file = gr.File(label="Export", interactive=False, elem_id="admc-export", visible=False)
        timer = gr.Timer(UI_REFRESH_S)

        # ---------------------------------------------------------------- streams
        def key_of(request: gr.Request) -> str:
            return LOCAL if local else session_key(request)

        if not local:
            previewed: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # session -> last preview

            def on_frame(frame, request: gr.Request):
                got_slot = engine.frame_slots.acquire(blocking=False)
                if engine.trace is not None:
                    engine.trace_frame(session_key(request), dropped=not got_slot, frame=frame)
                if not got_slot:
                    engine.dropped_frames += 1          # every slot busy: this frame is dropped
                    return gr.skip()
                try:
                    try:
                        s = engine.get(session_key(request))
                    except SessionLimit:
                        return gr.skip()                # the panel says why (refresh)
                    if frame is None:
                        return None
                    frame = s.cap_frame(frame)
                    s.push_video(frame)
                    now = time.monotonic()
                    if now - previewed.get(s, 0.0) < 1.0 / PREVIEW_FPS:
                        return gr.skip()                # the preview is a view, not the analysis
                    previewed[s] = now
                    return page_preview(s, frame)
                finally:
                    engine.frame_slots.release()

            cam.stream(on_frame, [cam], [preview], stream_every=webcam_every_s(engine.make_config().face_fps), time_limit=None,
                       concurrency_limit=None, show_progress="hidden", api_visibility="private")

            # the microphone: the page's own uplink (app/uplink.py), not a Gradio stream, so no
            # chunk is dropped; the page gets its session's token when it loads
            def give_token(request: gr.Request):
                return token_html(engine.uplink_token(session_key(request)))

            demo.load(give_token, None, [uplink], api_visibility="private")
            mic_btn.click(None, None, None, js="() => window.admcMic && window.admcMic.toggle()")
            if camera == "webrtc":
                cam_btn.click(None, None, None, js="() => window.admcCam && window.admcCam.toggle()")

        # ---------------------------------------------------------------- refresh
        # every window (200 ms): badges and emotion, pushed to the page as each window is made (a
        # stream per page, so none is skipped and none waits for a poll); the transcript, intent,
        # timeline and performance line twice a second
        rtc_preview = not local and camera == "webrtc"       # the preview comes with each window

        def camera_preview(key: str, s):
            """The annotated preview of the WebRTC camera's newest frame (skipped without one)."""
            feed = feeds.get(key) if feeds is not None else None
            img = feed.last_rgb if feed is not None else None
            return gr.skip() if img is None or s is None else page_preview(s, img)

        def window_panel(key: str) -> tuple[float | None, list]:
            """The newest window's time and the badges and emotion outputs for session ``key`` (and
            the camera's preview when it comes over WebRTC)."""
            s = engine.get(key, create=local)
            if s is None:
                outs = [badges_html(None, full=engine.admission_problem(key)), None]
                return None, outs + ([gr.skip()] if rtc_preview else [])
            res = s.results[-1] if s.results else None
            outs = [badges_html(res, completer=engine.checkpoint_of(key).completer_label), probs_label(res)]
            return (None if res is None else res.t), outs + ([camera_preview(key, s)] if rtc_preview else [])

        # one window stream per page holds one of Gradio's job slots while the page is open: at most
        # PUSH_STREAMS_PER_SESSION per admitted session run at once; a page beyond that (or whose stream
        # failed) is refreshed by a once-a-second poll instead
        window_outputs = [badges, emotion] + ([preview] if rtc_preview else [])
        streams_alive: dict[str, float] = {}          # key -> when its window stream last looked
        push_cap = PUSH_STREAMS_PER_SESSION * max(1, engine.max_sessions)

        def stream_alive(key: str) -> bool:
            seen = streams_alive.get(key)
            return seen is not None and time.monotonic() - seen < STREAM_STALE_S

        async def push_windows(request: gr.Request):
            key = key_of(request)
            for k in [k for k in streams_alive if not stream_alive(k)]:
                streams_alive.pop(k, None)
            over = len(streams_alive) >= push_cap and key not in streams_alive
            if not over:
                streams_alive[key] = time.monotonic()
            shown_t, outs = await asyncio.to_thread(window_panel, key)
            yield outs
            if over:
                return                                # the poll serves this page
            quiet = 0.0
            while True:                               # ends when the page goes (Gradio stops the event)
                streams_alive[key] = time.monotonic()
                await asyncio.sleep(WINDOW_PUSH_CHECK_S)
                quiet += WINDOW_PUSH_CHECK_S
                s = engine.sessions.get(key)          # a dict read, no lock: the check runs on the event loop
                results = getattr(s, "results", None)
                res_t = results[-1].t if results else None
                if (res_t is not None and res_t != shown_t) or quiet >= 1.0:
                    quiet = 0.0                       # (no new window for 1 s: no session yet, or it is
                    try:                              # full; the panel says why)
                        shown_t, outs = await asyncio.to_thread(window_panel, key)
                    except Exception as e:  # noqa: BLE001 - the stream outlives a bad window
                        print(f"app: window panel: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                        continue
                    yield outs

        def poll_window(request: gr.Request):
            key = key_of(request)
            if stream_alive(key):
                return [gr.skip()] * len(window_outputs)
            return window_panel(key)[1]

        def refresh_local_window(request: gr.Request):
            _, outs = window_panel(LOCAL)
            img = engine.local.last_frame if engine.local is not None else None
            s = engine.get(LOCAL, create=True)
            if img is not None and s is not None:
                label = shown_label(s.results[-1]) if s.results else None
                img = annotate(img, s.preview_face(), label)
            return outs + [img]

        if local:                                # this machine's camera: its preview at the same pace
            window_timer = gr.Timer(WINDOW_REFRESH_S)
            window_timer.tick(refresh_local_window, None, [badges, emotion, preview], show_progress="hidden",
                              api_visibility="private", concurrency_limit=None)
        else:
            demo.load(push_windows, None, window_outputs, show_progress="hidden", api_visibility="private",
                      concurrency_limit=None)
            gr.Timer(WINDOW_POLL_FALLBACK_S).tick(poll_window, None, window_outputs, show_progress="hidden",
                                                  api_visibility="private", concurrency_limit=None)

        def refresh_panels(request: gr.Request):
            s = engine.get(key_of(request), create=local)
            if s is None:
                return [None, "", timeline_svg([], engine.checkpoint_of(key_of(request)).classes), perf_html({})]
            rs = list(s.results)
            return [s.extra.get("intent"), s.transcript, timeline_svg(rs[-160:], s.classes), perf_html(s.stats())]

        timer.tick(refresh_panels, None, [intent, transcript, timeline, perf], show_progress="hidden",
                   api_visibility="private")

        # ---------------------------------------------------------------- controls
        def on_load(name, request: gr.Request):
            msg, ck_now = engine.load(name, key_of(request))
            acts = checkpoint_controls(ck_now)
            return (msg, provenance_md(ck_now.provenance()), gr.Slider(visible=acts["start_step"]),
                    gr.Checkbox(value=acts["mmer"], visible=acts["mmer"]))

        ck_btn.click(on_load, [ck_name], [ck_msg, prov, n_step, mmer], api_visibility="private")
        def set_n(v, request: gr.Request):
            engine.set(key_of(request), start_step=v)

        def set_mmer(v, request: gr.Request):
            engine.set(key_of(request), mmer=v)

        n_step.change(set_n, [n_step], None, api_visibility="private")
        mmer.change(set_mmer, [mmer], None, api_visibility="private")
        for (field, *_), sl in zip(THRESHOLDS, sliders):
            def set_thr(v, request: gr.Request, _f=field):
                engine.set(key_of(request), **{_f: float(v)})
            sl.change(set_thr, [sl], None, api_visibility="private")

        # ---------------------------------------------------------------- record / export
        def start_rec(request: gr.Request):
            try:
                s = engine.get(key_of(request))
            except SessionLimit as e:
                return str(e)
            s.start_recording()
            return "Recording&hellip;"

        def stop_rec(request: gr.Request):
            s = engine.get(key_of(request), create=False)
            if s is None:
                return "Nothing recorded."
            rows = s.stop_recording()
            return f"Recorded {len(rows)} windows."

        def export(kind: str, request):
            s = engine.get(key_of(request), create=False)
            rows = list(s.recorded) if s is not None and s.recorded else (list(s.results) if s is not None else [])
            if not rows:
                return gr.File(visible=False), "Nothing to export yet."
            d = Path(tempfile.mkdtemp(prefix="admc-export-"))
            stamp = time.strftime("%Y%m%d-%H%M%S")
            if kind == "csv":
                p = export_csv(rows, s.classes, d / f"admc-{stamp}.csv")
            else:
                p = export_json(rows, d / f"admc-{stamp}.json")
            src = "recording" if s.recorded else "recent windows (nothing recorded)"
            return gr.File(value=str(p), visible=True), f"Exported {len(rows)} windows ({src})."

        rec_btn.click(start_rec, None, [rec_msg], api_visibility="private")
        stop_btn.click(stop_rec, None, [rec_msg], api_visibility="private")
        def export_csv_(request: gr.Request):
            return export("csv", request)

        def export_json_(request: gr.Request):
            return export("json", request)

        csv_btn.click(export_csv_, None, [export_file, rec_msg], api_visibility="private")
        json_btn.click(export_json_, None, [export_file, rec_msg], api_visibility="private")

        def on_unload(request: gr.Request):
            engine.close(session_key(request))

        demo.unload(on_unload)
    return demo


def is_loopback(host: str | None) -> bool:
    import ipaddress

    if host is None:                   # Gradio's default: 127.0.0.1
        return True
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str | None, auth, share: bool = False) -> str | None:
    """The warning printed when the app is reachable beyond this machine without a login."""
    if auth:
        return None
    if share:
        return ("app: WARNING: --share without --auth: anyone with the public link can use this app "
                "(and see its camera and microphone results); add --auth USER:PASSWORD")
    if not is_loopback(host):
        return (f"app: WARNING: serving on {host} without --auth: anyone who can reach this address "
                "can use the app; add --auth USER:PASSWORD, or serve on 127.0.0.1")
    return None


def model_cards(engine: Engine) -> list[str]:
    """The only files the page may fetch: the offered checkpoints' model cards (not their weights)."""
    from app.checkpoint import CARD_FILES

    cards = {str(Path(p) / n) for p in engine.choices.values() for n in CARD_FILES if (Path(p) / n).is_file()}
    for ck in engine.loaded.values():
        card = ck.provenance().get("model_card")
        if card and not str(card).startswith(("http://", "https://")) and Path(card).is_file():
            cards.add(str(card))
    return sorted(cards)


def launch(engine: Engine, *, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           auth: tuple[str, str] | None = None, quiet: bool = False, say=print, camera: str = "webrtc"):
    """Build and start the UI (non-blocking); returns the Gradio app.  ``share`` that cannot open
    a tunnel (offline) is reported through ``say`` and the app keeps serving locally.  ``camera``:
    ``"webrtc"`` or ``"stream"`` (:func:`build_ui`); webrtc needs aiortc (``say`` tells when it
    is missing and the page uses the stream).  The camera feeds are ``demo.camera_feeds`` (None
    without WebRTC)."""
    feeds = None
    if engine.local is None and camera == "webrtc":
        missing = camera_rtc.problem()
        if missing:
            say(f"app: --camera-transport webrtc: {missing}; the page sends the camera frame by frame instead")
            camera = "stream"
        else:
            camera_rtc.gather_on(host)
            feeds = camera_rtc.CameraFeeds(engine)
    demo = build_ui(engine, camera=camera, feeds=feeds)
    demo.camera_feeds = feeds
    demo.queue(default_concurrency_limit=4)
    warning = exposure_warning(host, auth, share)
    if warning:
        say(warning)
    from starlette.middleware import Middleware

    middleware = [Middleware(SessionGuard, engine=engine), Middleware(AudioUplink, engine=engine, login_of=login_of)]
    if feeds is not None:
        middleware.append(Middleware(camera_rtc.CameraOffers, feeds=feeds, login_of=login_of))
    kw = dict(server_name=host, server_port=port, auth=auth, quiet=quiet, show_error=True,
              allowed_paths=model_cards(engine), prevent_thread_lock=True,
              css=CSS + (camera_rtc.CSS if feeds is not None else ""), ssr_mode=False,
              head=PAGE_JS + (camera_rtc.PAGE_JS if feeds is not None else ""),
              app_kwargs={"middleware": middleware})
    demo.share_ok = False
    if share:
        try:
            demo.launch(share=True, **kw)
            demo.share_ok = bool(getattr(demo, "share_url", None))
        except Exception as e:  # noqa: BLE001 - no tunnel offline: keep serving locally
            say(f"app: --share: could not open a share link ({type(e).__name__}: {e})")
        if not demo.share_ok:
            say("app: --share: no public link (offline, or the tunnel service is unreachable); "
                "serving locally only")
            if getattr(demo, "server", None) is None:
                demo.launch(share=False, **kw)
    else:
        demo.launch(share=False, **kw)
    return demo


def serve(ck, comp, args, make_config, choices: dict | None = None) -> int:
    """``python -m app`` with the UI: serve until interrupted."""
    import sys

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    engine = Engine(ck, comp, lambda: make_config(face_fps=args.face_fps or SessionConfig.face_fps), device=ck.model.emb_mean.device,
                    choices=choices, max_sessions=getattr(args, "max_sessions", MAX_SESSIONS),
                    max_per_user=getattr(args, "max_sessions_per_user", MAX_SESSIONS_PER_USER))
    if getattr(args, "trace", None):
        from app.trace import StageTrace

        engine.trace = StageTrace(args.trace)
    if args.source is not None:
        from app.local import FileCapture, LocalCapture

        cap = (LocalCapture(getattr(args, "camera", 0), getattr(args, "microphone", None)) if args.source == LOCAL
               else FileCapture(args.source))
        if not cap.available:
            say(f"app: --source {args.source}: {cap.problem}; serving the browser-capture UI instead")
        else:
            engine.local = cap
            cap.start(engine.get(LOCAL))
            if cap.problem:
                say(f"app: --source {args.source}: {cap.problem}")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    demo = None
    try:
        demo = launch(engine, host=args.host, port=args.port, share=args.share, auth=auth, quiet=args.quiet, say=say,
                      camera=getattr(args, "camera_transport", "webrtc"))
        say(f"app: serving on http://{args.host}:{demo.server_port}"
            + (f"  (public: {demo.share_url})" if demo.share_ok else ""))
        while True:
            time.sleep(3600)
    except OSError as e:    # the port was taken between the check at start and now
        say(f"app: --port {args.port}: cannot serve on {args.host} ({e})")
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        if engine.local is not None:
            engine.local.stop()
        if demo is not None and demo.camera_feeds is not None:
            demo.camera_feeds.close_all()
        for s in list(engine.sessions.values()):
            s.close()
        if demo is not None:
            demo.close()
        if engine.trace is not None:
            engine.trace.close()
    return 0
