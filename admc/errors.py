"""Errors the core raises for a caller to act on (not only to print)."""

from __future__ import annotations


class ModalityError(ValueError):
    """The features of one modality cannot be used (wrong shape, NaN/inf): ``modality`` is its
    name, ``reason`` what is wrong.  ``str()`` is ``"modality X: reason"``; a ValueError, so a
    caller that catches ValueError (the command line's one-line errors) sees no difference."""

    def __init__(self, modality: str, reason: str):
        super().__init__(f"modality {modality}: {reason}")
        self.modality = modality
        self.reason = reason

    def __reduce__(self):          # picklable across process pools with both fields
        return type(self), (self.modality, self.reason)
