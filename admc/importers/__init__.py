"""Importers that turn public feature releases into "admc-features/1" dataset directories.

- :func:`admc.importers.mmin_iemocap.import_mmin_iemocap`: the MMIN release of IEMOCAP features
  (AIM3-RUC/MMIN: ``A/comparE.h5``, ``V/denseface.h5``, ``L/bert_large.h5``, ``target/{1..10}``).
- :func:`admc.importers.mintrec.import_mintrec`: the MIntRec release (thuiar/MIntRec:
  ``audio_data/audio_feats.pkl``, ``video_data/video_feats.pkl``, ``{train,dev,test}.tsv``).

Pickled inputs are never unpickled with the stock unpickler: see :mod:`admc.importers._safe_pickle`.
"""
