"""Dataset building: extract manifests read and written (:mod:`~extractors.dataset.manifests`),
samples extracted and cached (:mod:`~extractors.dataset.builder`: inline or a process pool;
:mod:`~extractors.dataset.ray_engine`: Ray, side by side), and training windows rendered through the
live front ends (:mod:`~extractors.dataset.training_render`)."""
