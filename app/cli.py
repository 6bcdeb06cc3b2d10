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
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description=__doc__,
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
    p.add_argument("--out", default=None, help="with --no-ui: JSONL output file (default: stdout)")
    p.add_argument("--realtime", action="store_true",
                   help="replay FILE at its real pace (threaded, like a live stream); default: as fast as possible")
    p.add_argument("--duration", type=float, default=None, help="--source local --no-ui: stop after this many seconds")
    p.add_argument("--checkpoint", default=None,
                   help="run directory from `admc train` (default: weights/starter/)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="UI: the run directories in DIR may also be chosen on the page, each for its own "
                        "session (by name; the page can never name a path)")
    p.add_argument("--intent-checkpoint", default=None, help="optional second head (run directory), shown beside emotion")
    p.add_argument("--device", default="auto", help="core (and face detector) device: auto (CUDA when present), cpu, cuda")
    p.add_argument("--start-step", type=int, default=None, help="diffusion start step n (default: the checkpoint's)")
    p.add_argument("--no-mmer", action="store_true", help="switch MMER enhancement off")
    p.add_argument("--no-asr", action="store_true", help="no speech recognition (T always missing)")
    p.add_argument("--face-fps", type=float, default=None,
                   help="frames per second through the face extractor (default 15 live, 10 for a fast replay)")
    p.add_argument("--host", default="127.0.0.1", help="UI: address to serve on (0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=7860, help="UI: port")
    p.add_argument("--share", action="store_true", help="UI: also open a public Gradio share link (needs internet)")
    p.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="UI: require this login")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="less output on stderr")
    return p


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
        cfg = SessionConfig(start_step=args.start_step, mmer=not args.no_mmer, **kw)
        return cfg

    heads = {name: m for name, (m, _meta) in ck.heads.items()}
    if args.no_ui:
        from app.session import LiveSession

        if args.source == "local":
            from app.local import run_local_headless

            return run_local_headless(ck, comp, config(face_fps=args.face_fps or 15.0), heads,
                                      args.out, args.duration, quiet=args.quiet, camera=args.camera,
                                      microphone=args.microphone)
        from app.replay import replay_to_jsonl

        cfg = config(face_fps=args.face_fps or (15.0 if args.realtime else 10.0),
                     asr_sync=not args.realtime)
        session = LiveSession(ck.model, comp, cfg, heads=heads, threaded=args.realtime)
        try:
            n = replay_to_jsonl(session, args.source, args.out, realtime=args.realtime)
        except Exception as e:  # noqa: BLE001 - an unreadable file is a user error, not a crash
            _say(f"app: cannot replay {args.source}: {type(e).__name__}: {e}")
            return 1
        finally:
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
