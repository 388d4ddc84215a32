"""Block-wise quantization shared by the 8-bit optimizers and `quantizer.blockwise`.

Code maps (dynamic and linear), the exact nearest-code lookup and numba kernels that
quantize/dequantize with one absmax scale per block. No node kinds live here.
"""
