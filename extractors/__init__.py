"""Live feature extractors (face V, audio A, speech/text T) and stream-health detectors, in three
parts that import one way (models <- live <- dataset):

* :mod:`extractors.models`  -- model wrappers (face, audio, ASR, Whisper encoder, text);
* :mod:`extractors.live`    -- the live front ends, stream health and the window assembler;
* :mod:`extractors.dataset` -- manifests, sample extraction and its engines, training rendering.

Beside them: :mod:`extractors.live_schema` (the feature sets; :meth:`FeatureSet.build` makes a set's
extractors), :mod:`extractors.media` (the one media decoder) and :mod:`extractors.types` (shared
records).  ``admc extract`` / ``admc manifest`` are :mod:`extractors.dataset.commands`; the ``admc``
console script that composes them with the core commands is :mod:`app.commands`, at the top of the
layers.
"""
