"""Noise schedules (diffusers schedulers) and samplers that complete missing modality rows."""
