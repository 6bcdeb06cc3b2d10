"""The live front ends: audio (resample once, ring, VAD, speech gate), face (frame checks, the
tracker), text (ASR results to T rows), the streaming transcriber, stream health and the window
assembler (the same rules build ``admc extract``'s training windows).  Built on
:mod:`extractors.models`; imports nothing from :mod:`extractors.dataset`."""
