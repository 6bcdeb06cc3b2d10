"""The comparison methods of ``admc bench`` that are not the ADMC pipeline itself (docs/baselines.md):
autoencoder completers (``ae``, ``cra``, ``mmin``: :mod:`admc.baselines.imputers`), jointly trained
encoders (``joint``: :mod:`admc.baselines.joint`) and per-condition logistic regression on pooled raw
features (``linear``: :mod:`admc.baselines.linear`).  Each is registered once, in
``admc.methods.METHODS``."""
