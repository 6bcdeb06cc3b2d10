"""Model wrappers: what turns media into rows, one model each -- the face (MTCNN, the aligned crop,
the expression networks), audio (openSMILE, silero VAD, the resampler, the A row sources over a
16 kHz ring), speech recognition (faster-whisper / openai-whisper), the Whisper encoder's A rows,
and text (MiniLM word pieces, nade's emoji credences).  Imports nothing from
:mod:`extractors.live` or :mod:`extractors.dataset`."""
