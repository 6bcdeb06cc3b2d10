"""Utterance-level affect scores from the ``nade`` package (MIT): emoji prediction -> basic emotions.

    affect = TextAffect()
    affect.scores(["I love this", "this is awful"])        # [2, 8] in LABELS order, each in [0, 1]
    affect.emoji_distribution(["I love this"])              # [1, 151]: nade's fastText emoji credences

nade (Hotz-Behofsits) ships its fastText emoji classifier (trained on social-media posts) and one
gradient-boosted regressor per Plutchik emotion over the predicted emoji distribution inside its
wheel, so nothing is downloaded.  Under a millisecond per text on one core.
"""

from __future__ import annotations

import numpy as np

LABELS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")


class TextAffect:
    def __init__(self):
        try:
            from nade import Nade
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ImportError("text affect scores need the 'nade' package (pip install nade==0.3.1)") from e
        import warnings

        with warnings.catch_warnings():        # nade warns when it unpacks its regressors on first use
            warnings.simplefilter("ignore")
            self._nade = Nade()
        self.n_emojis = int(self._nade.max_k)

    @staticmethod
    def _clean(texts: list[str]) -> list[str]:
        # fastText predicts per line: a newline inside a text would split it
        return [" ".join(str(t).split()) or "." for t in texts]

    def emoji_distribution(self, texts: list[str]) -> np.ndarray:
        """``[n, n_emojis]`` emoji credences in nade's emoji-id order (the regressors' input)."""
        if not texts:
            return np.zeros((0, self.n_emojis), np.float32)
        preds = self._nade.predict_emojis(self._clean(texts), k=self.n_emojis, sort_by_key=True)
        return np.stack([np.asarray(cred, dtype=np.float32) for cred, _labels in preds])

    def scores(self, texts: list[str]) -> np.ndarray:
        """``[n, 8]`` emotion intensities in :data:`LABELS` order."""
        if not texts:
            return np.zeros((0, len(LABELS)), np.float32)
        raw = self._nade.predict(self._clean(texts))
        return np.stack([np.asarray(raw[lbl], dtype=np.float32) for lbl in LABELS], axis=1)


class AffectTextEncoder:
    """A text encoder (:class:`extractors.models.text.TextEncoder`) whose rows carry nade's emoji distribution.

    Same interface as the encoder it wraps: ``encoder(text) -> (words [n, dim], pooled [dim])`` or
    None, ``encode_batch``, ``dim``, ``path``; each word row and the pooled vector are the encoder's
    followed by the utterance's :meth:`TextAffect.emoji_distribution` (``dim`` = encoder dim + 151).
    Chosen by measurement (benchmarks/results/features/text_features.md): MiniLM + emoji distribution is the
    best pair on GoEmotions validation and test.
    """

    def __init__(self, encoder, affect: TextAffect | None = None):
        self.encoder = encoder
        self.affect = affect or TextAffect()
        self.dim = int(encoder.dim) + self.affect.n_emojis
        self.path = encoder.path

    def __call__(self, text: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str | None]) -> list[tuple[np.ndarray, np.ndarray] | None]:
        out = self.encoder.encode_batch(texts)
        idx = [i for i, o in enumerate(out) if o is not None]
        if not idx:
            return out
        emo = self.affect.emoji_distribution([str(texts[i]).strip() for i in idx])
        for k, i in enumerate(idx):
            words, pooled = out[i]
            e = emo[k]
            out[i] = (np.concatenate([words, np.broadcast_to(e, (len(words), e.size))], axis=1).astype(np.float32),
                      np.concatenate([pooled, e]).astype(np.float32))
        return out
