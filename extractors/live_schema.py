"""The feature schema the live extractors produce, and the analysis window they are assembled in.

A checkpoint that runs live (the app, ``weights/starter``) must have exactly the schema of one
:class:`FeatureSet`; training data for it (``admc extract``, the starter build) is shaped like these
windows and records the feature set's name in its ``meta.json`` (``extractors.feature_set``), which
``admc train`` carries into the run's ``run.json`` (``dataset.feature_set``).  The app builds the
extractors of the checkpoint's feature set; a checkpoint without the record is recognised by its
dimensions.

Four feature sets exist:

* ``opensmile-minixception-minilm`` (the first starter): A openSMILE ComParE_2016 LLD + deltas
  (130-d), V fer's mini-Xception penultimate features (128-d), T MiniLM word pieces (384-d);
* ``opensmile-whisper-resnet-minilm-nade`` (the default): A the openSMILE rows side by side with
  the Whisper tiny.en encoder states of the window (130 + 384 = 514-d, ``extractors.models.speech_encoder``),
  V this project's FER2013 ResNet (384-d, ``extractors.models.face_net``), T MiniLM word pieces followed by
  nade's 151 emoji credences (535-d, ``extractors.models.text_affect``).  Each part was chosen by
  measurement on held-out speakers / test splits: benchmarks/results/features/speech_features.md,
  text_features.md, weights/face_resnet_fer2013.json;
* ``opensmile-whisper1s-resnet-minilm-nade`` and ``...-whisper3s-...``: the same, but the Whisper encoder
  runs on 1 s / 3 s pieces of a fixed grid, each finished piece encoded once and the window's last
  piece as far as it has arrived (``extractors.models.speech_encoder.EncoderGridRows``), instead of on
  each 3 s window whole (about a fifth / a half of the encoder's work live).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from admc.data import Modality, Schema

WINDOW_SECONDS = 3.0      # one analysis window covers the last 3 s
AUDIO_FRAME_RATE = 10.0   # A rows per second
VIDEO_FRAME_RATE = 10.0   # V rows per second (frames are sampled to this rate inside a window)
HOP_SECONDS = 0.2         # a new prediction every 200 ms (5 per second)

NADE_EMOJIS = 151         # nade's emoji distribution (extractors.models.text_affect.TextAffect.n_emojis)


@dataclass(frozen=True)
class FeatureSet:
    """Which live extractor makes each modality's rows, and the rows' dims."""

    name: str
    # A extractors side by side: "opensmile" (extractors.models.audio), "whisper", "whisper-1s" or
    # "whisper-3s" (extractors.models.speech_encoder; extractors.live.audio_frontend.WHISPER_GRID_S)
    audio: tuple[str, ...]
    face: str             # "mini_xception" | "resnet" (extractors.models.face.ExpressionNetwork)
    text_affect: bool     # nade's emoji distribution appended to each text row
    audio_dim: int
    face_dim: int
    text_model_dim: int = 384   # the bundled MiniLM; another text model changes it

    @property
    def text_dim(self) -> int:
        return self.text_dim_for(self.text_model_dim)

    def text_dim_for(self, text_model_dim: int) -> int:
        return int(text_model_dim) + (NADE_EMOJIS if self.text_affect else 0)

    def dims(self, text_model_dim: int | None = None) -> dict[str, int]:
        return {"A": self.audio_dim, "V": self.face_dim,
                "T": self.text_dim_for(text_model_dim or self.text_model_dim)}

    def schema(self, classes, text_dim: int | None = None) -> Schema:
        """The schema for ``classes``; ``text_dim``: the T row dim another text model gives (default
        :attr:`text_dim`)."""
        d = {**self.dims(), "T": int(text_dim) if text_dim is not None else self.text_dim}
        return Schema((Modality("A", d["A"], "sequence", "lstm"), Modality("V", d["V"], "sequence", "lstm"),
                       Modality("T", d["T"], "sequence", "textcnn")), tuple(classes))

    # how each of this feature set's extractors is made (used by build, the one entry point); each
    # imports its models only when called
    def _face_extractor(self, device="cpu", **kwargs):
        """The V extractor: MTCNN, the aligned crop, and this set's face network."""
        from extractors.models.face import FaceExtractor

        return FaceExtractor(device=device, network=self.face, **kwargs)

    def _audio_extractor(self, threads: int = 1):
        """The A extractor: openSMILE, the Whisper encoder, or both side by side (``window_source``
        and ``wave_source`` give its row sources)."""
        from extractors.live.audio_frontend import build_audio_features

        return build_audio_features(self.audio, threads=threads)

    def _text_encoder(self, model: str | None = None, device="cpu"):
        """The T encoder: MiniLM word pieces, followed by nade's emoji credences in the sets that have them."""
        from extractors.models.text import TextEncoder

        encoder = TextEncoder(model, device=device)
        if self.text_affect:
            from extractors.models.text_affect import AffectTextEncoder

            encoder = AffectTextEncoder(encoder)
        return encoder

    def build(self, device="cpu", *, face: bool = True, audio: bool = True, text: bool = True, threads: int = 1,
              face_kwargs: dict | None = None, text_model: str | None = None,
              strict: bool = True) -> "FeatureExtractors":
        """This feature set's extractors, the ones asked for (the one place that builds them: the app's
        :class:`~app.components.Components`, ``admc extract`` and the starter build call it).
        ``strict``: an extractor that cannot be built raises; otherwise it is None and
        :attr:`FeatureExtractors.errors` says why (modality -> ``Type: message``)."""
        from extractors.types import short_error

        built: dict[str, object] = {}
        errors: dict[str, str] = {}
        makers = {"V": (face, lambda: self._face_extractor(device, **(face_kwargs or {}))),
                  "A": (audio, lambda: self._audio_extractor(threads=threads)),
                  "T": (text, lambda: self._text_encoder(text_model, device=device))}
        for m, (wanted, make) in makers.items():
            if not wanted:
                continue
            try:
                built[m] = make()
            except Exception as e:  # noqa: BLE001 - reported per modality, or raised when strict
                if strict:
                    raise
                errors[m] = short_error(e)
        return FeatureExtractors(built.get("V"), built.get("A"), built.get("T"), errors)

    def describe(self) -> str:
        d = self.dims()
        return (f"{self.name}: A {'+'.join(self.audio)} {d['A']}-d, V {self.face} {d['V']}-d, "
                f"T MiniLM{' + nade' if self.text_affect else ''} {d['T']}-d")


@dataclass
class FeatureExtractors:
    """What :meth:`FeatureSet.build` gives: the V, A and T extractors (None: not asked for, or could
    not be built, then ``errors`` says why)."""

    face: object | None = None
    audio: object | None = None
    text: object | None = None
    errors: dict[str, str] = field(default_factory=dict)


FEATURE_SETS: dict[str, FeatureSet] = {fs.name: fs for fs in (
    FeatureSet("opensmile-minixception-minilm", audio=("opensmile",), face="mini_xception", text_affect=False,
               audio_dim=130, face_dim=128),
    FeatureSet("opensmile-whisper-resnet-minilm-nade", audio=("opensmile", "whisper"), face="resnet",
               text_affect=True, audio_dim=130 + 384, face_dim=384),
    FeatureSet("opensmile-whisper1s-resnet-minilm-nade", audio=("opensmile", "whisper-1s"), face="resnet",
               text_affect=True, audio_dim=130 + 384, face_dim=384),
    FeatureSet("opensmile-whisper3s-resnet-minilm-nade", audio=("opensmile", "whisper-3s"), face="resnet",
               text_affect=True, audio_dim=130 + 384, face_dim=384),
)}
DEFAULT_FEATURE_SET = "opensmile-whisper-resnet-minilm-nade"


def feature_set(name: str | None = None) -> FeatureSet:
    """The named feature set (default :data:`DEFAULT_FEATURE_SET`); an unknown name fails in one line."""
    name = name or DEFAULT_FEATURE_SET
    if name not in FEATURE_SETS:
        raise ValueError(f"feature set {name!r}: must be one of {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]


def feature_set_of(meta: dict | None, schema: Schema | None = None) -> FeatureSet | None:
    """The feature set of a run (``run.json``): its ``dataset.feature_set`` record, else the one whose
    A and V dims match ``schema`` (runs trained before the record existed); None when none fits."""
    ds = (meta or {}).get("dataset") or {}
    name = ds.get("feature_set") if isinstance(ds, dict) else None
    if name:
        return feature_set(name)
    if schema is None:
        return None
    dims = {m.name: m.dim for m in schema.modalities}
    for fs in FEATURE_SETS.values():
        if dims.get("A") == fs.audio_dim and dims.get("V") == fs.face_dim:
            return fs
    return None


def live_schema(classes: list[str] | tuple[str, ...], text_dim: int | None = None,
                feature_set_name: str | None = None) -> Schema:
    """The schema of ``feature_set_name`` (default feature set) for ``classes``; ``text_dim``: the
    T rows' dim when another text model than the bundled MiniLM is used (the full row dim)."""
    return feature_set(feature_set_name).schema(classes, text_dim)
