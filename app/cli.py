"""``python -m app``: the live emotion app (Gradio UI), or a headless replay / local capture.

    python -m app                                   # browser UI: webcam + microphone via the page
    python -m app --checkpoint-dir DIR              # the page may also pick any run in DIR (per session)
    python -m app --source local                    # UI fed by this machine's camera/mic
    python -m app --source FILE                     # UI fed by a file played in real time, looped
    python -m app --source FILE --no-ui --out R.jsonl [--realtime]
    python -m app --source local --no-ui --out R.jsonl --duration 60
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from admc.cli import OneLineParser
from admc.cli import number_type as _number


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m app", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=None,
                   help="FILE (a video or audio file to replay; with the UI: played in real time, looped) "
                        "or 'local' (this machine's camera and microphone); default: the browser's webcam "
                        "and microphone (UI only)")
    p.add_argument("--camera", default="0",
                   help="--source local: OpenCV camera index, device path or video URL (default 0)")
    p.add_argument("--microphone", default=None,
                   help="--source local: sounddevice input device, index or name (default: the system's)")
    p.add_argument("--no-ui", action="store_true", help="no browser UI: write results as JSON lines")
    p.add_argument("--out", default=None, help="with --no-ui: JSONL output file (default: stdout); an existing file "
                                              "that this app did not write is replaced only with --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out or --trace file the app did not write")
    p.add_argument("--realtime", action="store_true",
                   help="replay FILE at its real pace (threaded, like a live stream); default: as fast as possible")
    p.add_argument("--duration", type=_number(float, 0.1, what="seconds"), default=None, help="--source local --no-ui: stop after this many seconds")
    p.add_argument("--checkpoint", default=None,
                   help="run directory from `admc train` (default: weights/starter/)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="UI: the run directories in DIR may also be chosen on the page, each for its own "
                        "session (by name; the page can never name a path)")
    p.add_argument("--intent-checkpoint", default=None, help="optional second head (run directory), shown beside emotion")
    p.add_argument("--device", default="auto", help="core (and face detector) device: auto (CUDA when present), cpu, cuda")
    p.add_argument("--start-step", type=_number(int, 1, what="a step"), default=None, help="diffusion start step n (default: the checkpoint's)")
    p.add_argument("--no-mmer", action="store_true", help="switch MMER enhancement off")
    p.add_argument("--no-asr", action="store_true", help="no speech recognition (T always missing)")
    p.add_argument("--face-fps", type=_number(float, 0.1, 120.0, what="frames per second"), default=None,
                   help="frames per second through the face extractor (default 20 live, 10 for a fast replay)")
    p.add_argument("--voice-hold", type=_number(float, 0.1, 10.0, what="seconds"), default=None, metavar="SECONDS",
                   help="the voice (A) stays live this long after speech ends (default: the audio settings' "
                        "a_hold_s, 3 s: one window); the UI's slider changes it live")
    p.add_argument("--host", default="127.0.0.1", help="UI: address to serve on (0.0.0.0 for the network)")
    p.add_argument("--port", type=_number(int, 1, 65535, what="a port"), default=7860, help="UI: port")
    p.add_argument("--camera-transport", choices=("webrtc", "stream"), default="webrtc",
                   help="UI: how the page's camera reaches the server: webrtc (its video track, media on the "
                        "--host address; the page falls back to stream when it cannot connect) or stream "
                        "(a JPEG per frame through Gradio); default webrtc")
    p.add_argument("--share", action="store_true", help="UI: also open a public Gradio share link (needs internet)")
    p.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="UI: require this login")
    p.add_argument("--max-sessions", type=_number(int, 1, 1000, what="a session count"), default=8,
                   help="UI: live browser sessions served at once; a page beyond it is told the server is full "
                        "(default %(default)s)")
    p.add_argument("--max-sessions-per-user", type=_number(int, 1, 1000, what="a session count"), default=4,
                   help="UI with --auth: live sessions one login may hold at once (default %(default)s)")
    p.add_argument("--threads", type=_number(int, 1, 256, what="a thread count"), default=1, help="torch CPU threads (default 1)")
    p.add_argument("--trace", default=None, metavar="FILE",
                   help="UI: write a stage trace (JSON lines: frames, faces, audio, ASR, windows with wall times) "
                        "to FILE; benchmarks/browser_path.py reads it")
    p.add_argument("--quiet", action="store_true", help="less output on stderr")
    return p


def port_problem(host: str, port: int) -> str | None:
    """Why the UI could not serve on ``host:port`` (in use, not an address of this machine), or None."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        return f"cannot resolve --host {host} ({e})"
    fam, typ, proto, _, addr = infos[0]
    with socket.socket(fam, typ, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return f"already in use on {host} (stop what serves there, or choose another --port)"
            return f"cannot serve on {host}:{port} ({e.strerror or e})"
    return None


def replay_progress(source: str, quiet: bool = False):
    """A progress bar on stderr over the recording's seconds (shown on a terminal, not with --quiet)."""
    from tqdm.auto import tqdm

    from extractors import media

    try:
        total = media.probe(source).duration
    except Exception:  # noqa: BLE001 - the replay reports an unreadable file itself
        total = None
    return tqdm(total=round(total, 1) if total else None, unit="s", desc="replay",
                disable=True if quiet else None, bar_format="{desc}: {n:.1f}/{total} s of media "
                "[{elapsed}<{remaining}, {rate_fmt}]" if total else None)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.auth is not None and ":" not in args.auth:
        _say("app: --auth must be USER:PASSWORD")
        return 2
    if args.no_ui and args.source is None:
        _say("app: --no-ui needs --source FILE or --source local")
        return 2
    if args.source not in (None, "local") and not os.path.isfile(args.source):
        _say(f"app: --source {args.source}: no such file")
        return 2
    for flag, value in (("--checkpoint", args.checkpoint), ("--intent-checkpoint", args.intent_checkpoint)):
        if value is not None and not os.path.isfile(os.path.join(value, "run.json")):
            _say(f"app: {flag} {value}: " + ("no such directory" if not os.path.exists(value) else
                                              "not a run directory (no run.json; expected one from `admc train`)"))
            return 2
    if args.checkpoint_dir is not None and not os.path.isdir(args.checkpoint_dir):
        _say(f"app: --checkpoint-dir {args.checkpoint_dir}: not a directory")
        return 2
    if args.trace is not None:
        if args.no_ui:
            _say("app: --trace: only with the UI (a replay's timings are in its --out lines)")
            return 2
        from admc.outdir import OutputError, check_out_file
        from app.checkpoint import DEFAULT_CHECKPOINT

        try:
            check_out_file(args.trace, "trace", overwrite=args.overwrite, flag="--trace",
                           inputs=[("--checkpoint", args.checkpoint or DEFAULT_CHECKPOINT),
                                   ("--intent-checkpoint", args.intent_checkpoint),
                                   ("--checkpoint-dir", args.checkpoint_dir)])
        except OutputError as e:
            _say(f"app: {e}")
            return 2
    if not args.no_ui:
        why = port_problem(args.host, args.port)
        if why:
            _say(f"app: --port {args.port}: {why}")
            return 2
    if args.out not in (None, "-"):
        if not args.no_ui:
            _say("app: --out: only with --no-ui (the UI exports from the page)")
            return 2
        from admc.outdir import OutputError, check_out_file
        from app.checkpoint import DEFAULT_CHECKPOINT

        inputs = [("--source", None if args.source in (None, "local") else args.source),
                  ("--checkpoint", args.checkpoint or DEFAULT_CHECKPOINT),
                  ("--intent-checkpoint", args.intent_checkpoint), ("--checkpoint-dir", args.checkpoint_dir)]
        try:
            check_out_file(args.out, "jsonl", overwrite=args.overwrite, inputs=inputs)
        except OutputError as e:
            _say(f"app: {e}")
            return 2
    if args.no_ui and args.source not in (None, "local"):
        from app.replay import SourceError, media_streams

        try:
            media_streams(args.source)
        except SourceError as e:
            _say(f"app: --source {e}")
            return 2
        except Exception as e:  # noqa: BLE001 - unreadable: one line, not a traceback
            _say(f"app: cannot replay {args.source}: {type(e).__name__}: {e}")
            return 1

    import torch

    torch.set_num_threads(max(1, int(args.threads)))

    from admc.runtime import resolve_device
    from app.checkpoint import CheckpointError, checkpoint_choices, load_checkpoint

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        _say(f"app: {e}")
        return 2
    try:
        ck = load_checkpoint(args.checkpoint, device, intent=args.intent_checkpoint)
    except CheckpointError as e:
        _say(f"app: {e}")
        return 2
    try:
        choices = checkpoint_choices(ck.path, args.checkpoint_dir)
    except CheckpointError as e:
        _say(f"app: {e}")
        return 2
    if args.start_step is not None:
        completer = getattr(ck.model, "completer", None)
        steps = ck.model.cfg.adn.num_train_timesteps
        if not getattr(completer, "uses_start_step", False):
            _say(f"app: --start-step {args.start_step}: the checkpoint's completer ({ck.model.cfg.method}) has no "
                 "diffusion start step (it applies to admc_paper runs)")
            return 2
        if args.start_step > steps:
            _say(f"app: --start-step {args.start_step}: more than the checkpoint's {steps} diffusion steps")
            return 2
    if not args.quiet:
        _say(f"app: checkpoint {ck.path} ({', '.join(ck.classes)}) on {device}")

    from app.session import Components, SessionConfig

    comp = Components.load(device, feature_set=ck.feature_set, asr=not args.no_asr)
    for m, why in comp.errors.items():
        _say(f"app: modality {m} {why}")
    if comp.text is not None and comp.text_dim != ck.model.schema.modalities[
            ck.model.schema.names.index("T")].dim:
        _say(f"app: text encoder gives {comp.text_dim}-d features, checkpoint wants another size")
        return 2

    def config(**kw) -> SessionConfig:
        if args.voice_hold is not None:
            from extractors.live.health import HealthConfig

            kw["health"] = HealthConfig(a_hold_s=args.voice_hold)
        return SessionConfig(start_step=args.start_step, mmer=not args.no_mmer, **kw)

    heads = {name: m for name, (m, _meta) in ck.heads.items()}
    if args.no_ui:
        from app.session import LiveSession

        if args.source == "local":
            from app.local import run_local_headless

            return run_local_headless(ck, comp, config(face_fps=args.face_fps or SessionConfig.face_fps), heads,
                                      args.out, args.duration, quiet=args.quiet, camera=args.camera,
                                      microphone=args.microphone)
        from app.replay import replay_to_jsonl

        cfg = config(face_fps=args.face_fps or (SessionConfig.face_fps if args.realtime else 10.0),
                     asr_sync=not args.realtime)
        session = LiveSession(ck.model, comp, cfg, heads=heads, threaded=args.realtime)
        bar = replay_progress(args.source, quiet=args.quiet)
        try:
            n = replay_to_jsonl(session, args.source, args.out, realtime=args.realtime,
                                progress=lambda r: bar.update(max(0.0, r.t - bar.n)))
        except Exception as e:  # noqa: BLE001 - an unreadable file is a user error, not a crash
            _say(f"app: cannot replay {args.source}: {type(e).__name__}: {e}")
            return 1
        finally:
            bar.close()
            session.close()
        if n == 0:
            _say(f"app: --source {args.source}: no analysis window (shorter than one "
                 f"{cfg.hop_s:g} s hop)")
            return 1
        if not args.quiet:
            _say(f"app: {n} windows -> {args.out or 'stdout'}")
        return 0

    from app.ui import serve

    return serve(ck, comp, args, config, choices)


if __name__ == "__main__":
    sys.exit(main())
