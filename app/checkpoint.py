"""Load an ``admc train`` run for live use and refuse one the live extractors cannot feed.

A live checkpoint must have exactly the schema of one live feature set
(:class:`extractors.live_schema.FeatureSet`: which extractor makes A, V and T, and their dims) for its
own classes; the feature set is the one its run.json records (``dataset.feature_set``), or for runs
older than that record the one its A and V dims match.  The app then loads that feature set's
extractors.  An optional second head (e.g. an intent
classifier trained on the same live features) is a run directory ``RUN/intent/`` or one given with
``--intent-checkpoint``; it is shown in the UI beside the emotion bars.

The page can switch checkpoints only among :func:`checkpoint_choices`, fixed when the server
starts (``--checkpoint`` and the run directories in ``--checkpoint-dir``): the browser sends a
name, never a path, so no request can make the server open a directory of its choosing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "weights" / "starter"
CARD_FILES = ("MODEL_CARD.md", "model_card.md", "README.md")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used live; the message says why, for a person."""


@dataclass
class Checkpoint:
    path: Path
    model: object                    # admc.pipeline.ADMCModel
    meta: dict
    heads: dict = field(default_factory=dict)   # extra heads: name -> (model, meta)
    feature_set: object = None       # extractors.live_schema.FeatureSet

    @property
    def classes(self) -> list[str]:
        return list(self.model.schema.classes)

    @property
    def completer_label(self) -> str:
        """What fills a missing modality in, as the badges say it (``the ridge estimate`` for the starter,
        ``the ridge estimate + one ADN step`` for a run completing with its ADN's one-step sampler)."""
        return getattr(self.model.completer, "label", "the checkpoint's completer")

    @property
    def trained_with_mmer(self) -> bool:
        return bool(getattr(self.model, "mmer", False))

    def provenance(self) -> dict:
        """What the UI shows: where the weights come from."""
        return provenance(self.path, self.meta)


def provenance(path: Path, meta: dict) -> dict:
    ds = meta.get("dataset") or {}
    card = meta.get("model_card") or (ds.get("model_card") if isinstance(ds, dict) else None)
    if not card:
        for name in CARD_FILES:
            if (Path(path) / name).is_file():
                card = str(Path(path) / name)
                break
    cmd = meta.get("command") or []
    return {
        "path": str(path),
        "method": meta.get("method"),
        "dataset": ds if isinstance(ds, dict) else {"name": str(ds)},
        "command": " ".join(map(str, cmd)) if isinstance(cmd, (list, tuple)) else str(cmd),
        "model_card": card,
        "classes": list((meta.get("schema") or {}).get("classes", [])),
        "admc_version": meta.get("admc_version"),
    }


def checkpoint_feature_set(model, meta: dict, path):
    """The live feature set of a loaded run: the recorded one, else the one whose A and V dims
    match, else (for the error message) the one with the most matching dims."""
    from extractors.live_schema import FEATURE_SETS, feature_set_of

    try:
        fs = feature_set_of(meta, model.schema)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    if fs is None:
        dims = {m.name: m.dim for m in model.schema.modalities}
        fs = max(FEATURE_SETS.values(), key=lambda f: sum(dims.get(k) == v for k, v in f.dims().items()))
    return fs


def check_schema(model, path, text_dim: int | None = None, meta: dict | None = None):
    """Raise :class:`CheckpointError` listing what differs from the live extractors' schema;
    returns the checkpoint's feature set.  ``text_dim``: the T row dim another text model gives."""
    from extractors.live_schema import FEATURE_SETS

    fs = checkpoint_feature_set(model, meta or {}, path)
    want = fs.schema(model.schema.classes, text_dim)
    diff = want.differences(model.schema)
    if diff:
        known = "; ".join(f.describe() for f in FEATURE_SETS.values())
        raise CheckpointError(
            f"checkpoint {path} does not match the live extractors (closest feature set "
            f"{fs.name} vs checkpoint): " + "; ".join(diff)
            + f". The live feature sets are {known}; A, V and T all sequences, e.g. trained on "
            "features from `admc extract`.")
    return fs


def _load_one(path: Path, device, text_dim):
    from admc.pipeline import ADMCModel
    from admc.run import RunError, load_run

    try:
        model, meta = load_run(path, device)
    except RunError as e:
        raise CheckpointError(f"cannot load checkpoint {path}: {e}") from None
    if not isinstance(model, ADMCModel):
        raise CheckpointError(f"checkpoint {path}: method {meta['method']} has no encoders or completer to run "
                              "live (the app runs the methods trained on ITFN or joint embeddings)")
    fs = check_schema(model, path, text_dim, meta)
    return model, meta, fs


def load_checkpoint(path: str | os.PathLike | None = None, device="cpu", *,
                    text_dim: int | None = None, intent: str | os.PathLike | None = None) -> Checkpoint:
    """The run at ``path`` (default ``weights/starter/``), checked against the live schema."""
    default = path is None
    p = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not p.exists():
        if default or p.resolve() == DEFAULT_CHECKPOINT.resolve():
            shown = DEFAULT_CHECKPOINT
            if DEFAULT_CHECKPOINT.is_relative_to(REPO_ROOT):
                shown = DEFAULT_CHECKPOINT.relative_to(REPO_ROOT)
            raise CheckpointError(
                f"the default starter checkpoint {shown}/ is not "
                "there yet (it is built separately); pass --checkpoint RUN with a run directory "
                "written by `admc train` on live-schema features")
        raise CheckpointError(f"checkpoint {p} does not exist (expected a run directory from `admc train`)")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {p} is not a directory (expected a run directory from `admc train`)")
    model, meta, fs = _load_one(p, device, text_dim)
    ck = Checkpoint(p, model, meta, feature_set=fs)
    ipath = Path(intent) if intent is not None else (p / "intent")
    if intent is not None or (ipath / "run.json").is_file():
        im, imeta, ifs = _load_one(ipath, device, text_dim)
        if ifs != fs:
            raise CheckpointError(f"intent checkpoint {ipath} uses the feature set {ifs.name}, "
                                  f"the checkpoint {p} {fs.name}: both heads read the same features")
        ck.heads["intent"] = (im, imeta)
    return ck


def checkpoint_choices(start: str | os.PathLike, directory: str | os.PathLike | None = None) -> dict[str, Path]:
    """Name -> run directory of every checkpoint the page may switch to: ``start`` (the one the
    server was started with) and each run directory (holding ``run.json``) directly inside
    ``directory``, by folder name.  Raises :class:`CheckpointError` when ``directory`` is not a
    directory."""
    start = Path(start)
    choices = {start.name or str(start): start}
    if directory is None:
        return choices
    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"--checkpoint-dir {d}: not a directory")
    for sub in sorted(d.iterdir()):
        if not (sub / "run.json").is_file() or any(sub.resolve() == p.resolve() for p in choices.values()):
            continue
        name, k = sub.name, 2
        while name in choices:
            name, k = f"{sub.name} ({k})", k + 1
        choices[name] = sub
    return choices
