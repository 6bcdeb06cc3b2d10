"""Live feature extractors (face V, audio A, speech/text T) and stream-health detectors."""
