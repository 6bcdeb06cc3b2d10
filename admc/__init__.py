"""ADMC: attention-based diffusion completion of missing modality features for
multimodal emotion and intent recognition."""

__version__ = "0.1.0"
