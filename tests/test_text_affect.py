"""nade affect scores and the MiniLM + emoji-distribution text features (``extractors.models.text_affect``)."""

from __future__ import annotations

import numpy as np
import pytest

from extractors.models.text import TextEncoder
from extractors.models.text_affect import LABELS, AffectTextEncoder, TextAffect


@pytest.fixture(scope="module")
def affect():
    return TextAffect()


def test_scores_follow_the_words(affect):
    s = affect.scores(["I love this so much, what a wonderful day", "I hate you, this is disgusting and awful",
                       "I am so scared, something terrible is going to happen"])
    assert s.shape == (3, len(LABELS)) and ((s >= 0) & (s <= 1)).all()
    joy, anger, fear = LABELS.index("joy"), LABELS.index("anger"), LABELS.index("fear")
    assert s[0, joy] > s[1, joy] and s[0, joy] > s[2, joy]
    assert s[1, anger] > s[0, anger]
    assert s[2, fear] > s[0, fear]


def test_emoji_distribution_is_a_distribution_and_newlines_do_not_split_a_text(affect):
    e = affect.emoji_distribution(["great news!", "great\nnews!"])
    assert e.shape == (2, affect.n_emojis) and (np.abs(e.sum(1) - 1.0) < 0.1).all()   # fastText floors at 1e-5
    assert np.allclose(e[0], e[1])
    assert affect.emoji_distribution([]).shape == (0, affect.n_emojis)


def test_affect_text_encoder_appends_the_emoji_distribution_to_every_row(affect):
    base = TextEncoder(device="cpu")
    enc = AffectTextEncoder(base, affect)
    assert enc.dim == base.dim + affect.n_emojis
    out = enc.encode_batch(["what a lovely surprise", "", "this is awful"])
    assert out[1] is None
    ref = base.encode_batch(["what a lovely surprise"])[0]
    words, pooled = out[0]
    assert words.shape == (len(ref[0]), enc.dim)
    assert np.allclose(words[:, :base.dim], ref[0]) and np.allclose(pooled[:base.dim], ref[1])
    emo = affect.emoji_distribution(["what a lovely surprise"])[0]
    assert np.allclose(words[:, base.dim:], emo) and np.allclose(pooled[base.dim:], emo)
    assert not np.allclose(out[2][0][0, base.dim:], emo)
