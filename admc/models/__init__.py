"""Plain ``nn.Module``s: unimodal encoders (ITFN), the ADN denoiser and the fusion classifier (MF)."""
