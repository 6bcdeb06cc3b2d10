"""The starter checkpoint's build (``weights/starter/``), as a small package: the recipe
(:mod:`~scripts.starter.recipe`: sources, label maps, splits, sizes), one module per stage (faces,
speech, text, pairs, training, evaluation, card; :mod:`~scripts.starter.workers` builds the
extractors once per worker process), the model card's template (``MODEL_CARD.md.j2``, filled from a
dict of numbers by :mod:`~scripts.starter.card`) and :mod:`~scripts.starter.build`, the command
(``python scripts/build_starter.py`` or ``python -m scripts.starter``)."""
