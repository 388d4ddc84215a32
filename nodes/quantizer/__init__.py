"""Quantizer kinds: trained model in, quantized model artifact out (issue 7)."""
