"""``admc extract`` and ``admc manifest``: the commands that run the feature extractors over media
files, added to the core command line (:mod:`admc.cli`) by :func:`add_commands`.  The ``admc``
console script that puts them together with the core commands is :mod:`app.commands`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from admc.cli import UsageError
from extractors.live_schema import DEFAULT_FEATURE_SET, FEATURE_SETS  # light, no models


def _engine(args):
    """None (local processes) or the :class:`extractors.dataset.ray_engine.RayEngine` the flags ask for."""
    ray_flags = [f for f, v in (("--address", args.address), ("--num-cpus-per-task", args.num_cpus_per_task),
                                ("--num-gpus-per-task", args.num_gpus_per_task)) if v is not None]
    if args.engine != "ray":
        if ray_flags:
            raise UsageError(f"{ray_flags[0]}: only with --engine ray")
        return None
    from extractors.dataset.ray_engine import RayEngine, import_ray

    import_ray()                      # a missing Ray is reported before any work
    return RayEngine(address=args.address, workers=args.workers,
                     num_cpus_per_task=1.0 if args.num_cpus_per_task is None else args.num_cpus_per_task,
                     num_gpus_per_task=args.num_gpus_per_task or 0.0)


def cmd_extract(args) -> int:
    from admc.outdir import check_extract_out

    check_extract_out(args.out, args.manifest, args.overwrite)   # before the extractors load
    from extractors.dataset.builder import ExtractSettings, extract_manifest

    try:
        Path(args.manifest).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"--manifest {args.manifest}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError:
        pass  # a missing manifest is reported by extract_manifest
    classes = [c for c in args.classes.split(",") if c.strip()] if args.classes else None
    settings = ExtractSettings(asr=not args.no_asr, feature_set=args.feature_set)
    path = extract_manifest(args.manifest, args.out, workers=args.workers or 1, progress=not args.quiet,
                            classes=classes, name=args.name, settings=settings, engine=_engine(args),
                            overwrite=args.overwrite)
    if not args.quiet:
        meta = json.loads((Path(path) / "meta.json").read_text())
        ex = meta["extract"]
        for s, c in ex["counts"].items():
            print(f"{s}: {c['samples']} samples (A {c['A_present']}, V {c['V_present']}, T {c['T_present']} present)")
        if "engine" in ex:
            e = ex["engine"]
            print(f"ray: {e['extracted']} sample(s) sent to {e['workers']} worker(s) on {e.get('nodes', 0)} node(s)")
        if ex["skipped"]:
            print(f"skipped {len(ex['skipped'])} file(s) (listed in meta.json extract.skipped)")
        print(f"wrote {path} in {ex['seconds']:.0f} s")
    return 0


def cmd_manifest(args) -> int:
    from admc.outdir import check_out_file
    from extractors.dataset import manifests as mf

    check_out_file(args.out, "manifest", overwrite=args.overwrite, inputs={"--root": args.root})
    if args.layout == "iemocap":
        rows = mf.iemocap_rows(args.root, args.test_session, args.val_session, args.labels, args.video)
        missing = []
    elif args.layout == "mintrec":
        rows, missing = mf.mintrec_rows(args.root)
    else:
        rows = mf.ravdess_rows(args.root, mf.actors(args.test_actors), mf.actors(args.val_actors), args.channel,
                               args.calm, args.transcript, args.media)
        missing = []
        if args.transcript == "asr":
            for r in rows:
                r["transcript"] = ""
    for split, opt in (("train", None), ("val", "--val-session" if args.layout == "iemocap" else "--val-actors"),
                       ("test", "--test-session" if args.layout == "iemocap" else "--test-actors")):
        if rows and not any(r["split"] == split for r in rows):
            hint = f" (check {opt})" if opt and args.layout != "mintrec" else ""
            print(f"admc: WARNING: the manifest has no {split} sample{hint}; admc extract needs train, val and test",
                  file=sys.stderr)
    path = mf.write_manifest(rows, args.out)
    if not args.quiet:
        print(json.dumps(mf.summary(rows), indent=1))
        if missing:
            print(f"left out {len(missing)} sample(s) whose video is missing, e.g. {missing[:3]}")
        if args.layout == "mintrec":
            print("classes in MIntRec's order: --classes '" + ",".join(mf.MINTREC_CLASSES) + "'")
        print(f"wrote {path}")
    return 0


def add_commands(sub, parser) -> None:
    """Add ``extract`` and ``manifest`` to the core parser's subcommands ``sub`` (after the core
    ones, so ``admc --help`` lists them last)."""
    x = sub.add_parser("extract", help="media files in a manifest CSV -> feature dataset with the live extractors")
    x.add_argument("--manifest", required=True, help="CSV: path,label,split[,transcript,id,start,end]")
    x.add_argument("--out", required=True, help="dataset directory to write (per-sample cache in OUT/.cache; a "
                                                "rerun of the same manifest resumes from it)")
    x.add_argument("--overwrite", action="store_true", help="replace a dataset of another origin at --out")
    x.add_argument("--workers", type=int, default=None,
                   help="processes extracting in parallel (default 1; with --engine ray: Ray workers, default as "
                        "many as the cluster's resources hold)")
    x.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: processes on this machine (default); ray: tasks on a Ray cluster "
                        "(pip install 'admc[ray]'; docs/scaling.md)")
    x.add_argument("--address", help="with --engine ray: the cluster, auto or HOST:PORT (default: Ray's own choice, "
                                     "RAY_ADDRESS or a new local instance)")
    x.add_argument("--num-cpus-per-task", type=float, default=None, metavar="K",
                   help="with --engine ray: CPUs per worker (default 1; also its torch threads)")
    x.add_argument("--num-gpus-per-task", type=float, default=None, metavar="G",
                   help="with --engine ray: GPUs per worker (default 0; > 0 runs the networks on CUDA)")
    x.add_argument("--classes", help="comma-separated class list and order (default: sorted labels)")
    x.add_argument("--name", help="dataset name (default: the directory name)")
    x.add_argument("--no-asr", action="store_true", help="no speech recognition: T is missing without a transcript")
    x.add_argument("--feature-set", choices=list(FEATURE_SETS), default=DEFAULT_FEATURE_SET,
                   help="which live extractors make A, V and T (default %(default)s; the live app loads the "
                        "feature set a checkpoint was trained on)")
    x.add_argument("--quiet", action="store_true")
    x.set_defaults(func=cmd_extract)

    mf = sub.add_parser("manifest", help="write an extract manifest for a raw release (iemocap, mintrec, ravdess)")
    msub = mf.add_subparsers(dest="layout", required=True)
    mi = msub.add_parser("iemocap", help="IEMOCAP_full_release (Session1..5), leave one session out")
    mi.add_argument("--test-session", type=int, default=5)
    mi.add_argument("--val-session", type=int, default=None, help="default: the session before the test one")
    mi.add_argument("--labels", choices=["4", "all"], default="4", help="4: ang, hap(+exc), neu, sad")
    mi.add_argument("--video", action="store_true", help="dialogue .avi segments instead of sentence .wav")
    mm = msub.add_parser("mintrec", help="MIntRec raw_data/<season>/<episode>/<clip>.mp4 + {train,dev,test}.tsv")
    mr = msub.add_parser("ravdess", help="RAVDESS files by name, actor-disjoint splits")
    mr.add_argument("--test-actors", default="19-24")
    mr.add_argument("--val-actors", default="15-18")
    mr.add_argument("--channel", choices=["speech", "song", "all"], default="speech")
    mr.add_argument("--calm", choices=["keep", "neutral", "drop"], default="keep")
    mr.add_argument("--transcript", choices=["statement", "asr"], default="statement")
    mr.add_argument("--media", choices=["auto", "av", "audio"], default="auto",
                    help="auto: the audio-video file when present, else audio-only")
    for q in (mi, mm, mr):
        q.add_argument("--root", required=True)
        q.add_argument("--out", required=True, help="manifest CSV to write (not inside --root)")
        q.add_argument("--overwrite", action="store_true", help="replace an existing file at --out")
        q.add_argument("--quiet", action="store_true")
        q.set_defaults(func=cmd_manifest)
