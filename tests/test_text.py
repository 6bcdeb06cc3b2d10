"""Text modality: BERT-family features through transformers (bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

import numpy as np
import pytest

from extractors.models.text import TextEncoder, bundled_minilm_path


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def enc():
    return TextEncoder()


def test_shapes_and_dim(enc):
    text = "The quick brown fox jumps over the lazy dog."
    words, pooled = enc(text)
    assert enc.dim == 384
    n_tokens = len(enc.tokenizer.tokenize(text))             # word pieces, no [CLS]/[SEP]
    assert words.shape == (n_tokens, 384) and pooled.shape == (384,)
    assert words.dtype == np.float32 and pooled.dtype == np.float32
    assert np.isfinite(words).all() and np.isfinite(pooled).all()


def test_empty_text_gives_none(enc):
    assert enc("") is None and enc("   \n") is None and enc(None) is None
    out = enc.encode_batch(["", "hello there", None])
    assert out[0] is None and out[2] is None
    single = enc("hello there")
    np.testing.assert_allclose(out[1][1], single[1], atol=1e-5)   # batching/padding-invariant
    np.testing.assert_allclose(out[1][0], single[0], atol=1e-5)


def test_similar_sentences_are_closer(enc):
    happy1 = enc("I am so happy today, this is wonderful!")[1]
    happy2 = enc("I feel really glad and joyful right now.")[1]
    train = enc("The train timetable lists departures from platform four.")[1]
    angry1 = enc("I am furious, you ruined everything!")[1]
    angry2 = enc("This makes me so angry, you wrecked it all.")[1]
    assert cos(happy1, happy2) > cos(happy1, train) + 0.2
    assert cos(angry1, angry2) > cos(angry1, train) + 0.2


def test_long_text_is_truncated(enc):
    words, pooled = enc("word " * 2000)
    assert words.shape == (enc.max_length - 2, enc.dim) == (254, 384)


def test_local_path_load_is_the_bert_code_path(enc):
    """A user's local BERT directory (e.g. bert-large-uncased, 1024-d) goes through the same
    loader; here the bundled MiniLM directory is passed explicitly by path."""
    path = bundled_minilm_path()
    assert (path / "config.json").is_file()
    by_path = TextEncoder(str(path), max_length=64)
    assert by_path.dim == 384 and by_path.max_length == 64
    assert by_path.model.config.model_type == "bert"
    a, b = by_path("Is this the same model?"), enc("Is this the same model?")
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_dim_follows_the_local_models_config(enc, tmp_path):
    """A differently sized BERT directory (save_pretrained layout) -> dim from its config."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=enc.tokenizer.vocab_size, hidden_size=48, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=96, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(tmp_path)
    enc.tokenizer.save_pretrained(tmp_path)
    small = TextEncoder(tmp_path)
    assert small.dim == 48 and small.max_length == 128
    words, pooled = small("a tiny bert")
    assert words.shape == (3, 48) and pooled.shape == (48,)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        TextEncoder(tmp_path / "bert-large-uncased")


@pytest.mark.slow
def test_pooled_matches_sentence_transformers(enc):
    """The pooled vector is all-MiniLM-L6-v2's published sentence embedding (before L2 norm)."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    text = "I am so happy today, this is wonderful!"
    ref = model.encode([text])[0]
    pooled = enc(text)[1]
    np.testing.assert_allclose(pooled / np.linalg.norm(pooled), ref, atol=1e-4)
