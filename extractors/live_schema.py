"""The feature schema the live extractors produce, and the analysis window they are assembled in.

A checkpoint that runs live (the app, ``weights/starter``) must have exactly this schema; training
data for it (``admc extract``, the starter build) is shaped like these windows.
"""

from __future__ import annotations

from admc.data import Modality, Schema

AUDIO_DIM = 130   # openSMILE ComParE_2016 LLD + deltas, 10 frames/s (extractors.audio)
FACE_DIM = 128    # mini-Xception penultimate features per frame (extractors.face)
TEXT_DIM = 384    # MiniLM token features (extractors.text, default model)

WINDOW_SECONDS = 3.0      # one analysis window covers the last 3 s
AUDIO_FRAME_RATE = 10.0   # A rows per second
VIDEO_FRAME_RATE = 10.0   # V rows per second (frames are sampled to this rate inside a window)
HOP_SECONDS = 0.2         # a new prediction every 200 ms (5 per second)

MODALITIES = (
    Modality("A", AUDIO_DIM, "sequence", "lstm"),
    Modality("V", FACE_DIM, "sequence", "lstm"),
    Modality("T", TEXT_DIM, "sequence", "textcnn"),
)


def live_schema(classes: list[str] | tuple[str, ...], text_dim: int = TEXT_DIM) -> Schema:
    mods = tuple(Modality(m.name, text_dim if m.name == "T" else m.dim, m.kind, m.encoder) for m in MODALITIES)
    return Schema(mods, tuple(classes))
