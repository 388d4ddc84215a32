"""The quantized-model format: packed codes, their decoders, and the module rebuilt from them.

A `QuantizedModel` (flowopt.artifacts) stores ``packed`` tensors and a JSON ``layout``.
``layout["parameters"]`` describes every entry of the float model's state dict:

* ``{"scheme": "float"}`` — stored as is (float32), under its own name (biases, norms);
* ``{"scheme": "uniform", "bits", "shape", "symmetric"}`` — ``NAME.codes`` (bit-packed),
  ``NAME.scale`` (float32, one per output channel, or one), and for asymmetric grids
  ``NAME.zero_point`` (uint8): ``w = (code − zero_point) · scale``; symmetric grids use the
  fixed zero-point 2^(bits−1) and codes 1..2^bits−1 (a grid symmetric around 0);
* ``{"scheme": "codebook", "bits", "shape", "book", "block_size"?}`` — ``NAME.codes`` and a
  per-row or per-block float32 ``NAME.scale``: ``w = packed[book][code] · scale``. The book
  (2^bits float32 values) is stored once per model under its ``book`` name. Block-wise
  dynamic quantization (one absmax per block) and NUPES' power grids are both this scheme.

``layout["activations"]`` maps a layer name to the uniform fake-quantizer of its input
(``bits``, ``scale``, ``zero_point``), applied by a forward pre-hook.

Decoding is one float32 subtraction and multiply (uniform) or one lookup and multiply
(codebook), done with torch here; the numpy references in the tests compute the same
IEEE operations, so "what runs" equals "what the codes mean" bit for bit. Codes of b
bits are packed little-endian into a bit stream (the first code in the lowest bits), so
4-bit codes take half a byte and 3-bit codes three eighths.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from flowopt.artifacts import Model, QuantizedModel, build, encode

DECODER = "quantized"
LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


# --- bit packing ------------------------------------------------------------------------

def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned codes (< 2**bits) into a little-endian bit stream of uint8."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return codes.copy()
    if bits == 4:  # the block-wise kernels' nibble layout: the same little-endian stream
        from flowopt.nodes.blockwise.quantize import pack_nibbles

        return pack_nibbles(codes)
    planes = np.unpackbits(codes[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_codes`: the first `count` codes as uint8."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return packed[:count].copy()
    if bits == 4:
        from flowopt.nodes.blockwise.quantize import unpack_nibbles

        return unpack_nibbles(packed, count)
    planes = np.unpackbits(packed, bitorder="little")[:count * bits].reshape(count, bits)
    return np.packbits(planes, axis=1, bitorder="little").reshape(-1)


# --- decoding -----------------------------------------------------------------------------

def _codes(packed: dict[str, Any], name: str, entry: dict[str, Any]) -> torch.Tensor:
    count = math.prod(entry["shape"])
    raw = packed[f"{name}.codes"].numpy()
    return torch.from_numpy(unpack_codes(raw, entry["bits"], count))


def _rows(flat: torch.Tensor, scale: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """Reshape a flat decoded tensor to `shape`, with `scale` one per row (or one)."""
    rows = scale.numel()
    return flat.reshape(rows, -1).mul(scale.reshape(rows, 1)).reshape(shape)


def dequantize_entry(name: str, entry: dict[str, Any], packed: dict[str, Any]) -> torch.Tensor:
    """The float32 tensor that parameter `name`'s stored codes mean."""
    scheme = entry["scheme"]
    if scheme == "float":
        return packed[name]
    codes = _codes(packed, name, entry)
    scale = packed[f"{name}.scale"].float()
    if scheme == "uniform":
        if entry["symmetric"]:
            zero = torch.full((scale.numel(), 1), float(2 ** (entry["bits"] - 1)))
        else:
            zero = packed[f"{name}.zero_point"].float().reshape(-1, 1)
        centred = codes.float().reshape(scale.numel(), -1) - zero
        return _rows(centred.reshape(-1), scale, entry["shape"])
    if scheme == "codebook":
        values = packed[entry["book"]][codes.long()]
        block = entry.get("block_size")
        if block is None:
            return _rows(values, scale, entry["shape"])
        count = values.numel()
        padded = torch.nn.functional.pad(values, (0, (-count) % block))
        return padded.reshape(-1, block).mul(scale.reshape(-1, 1)).reshape(-1)[:count] \
            .reshape(entry["shape"])
    raise ValueError(f"parameter '{name}': unknown quantization scheme '{scheme}'")


class InputQuantizer:
    """Forward pre-hook: uniform fake quantization of a layer's input (asymmetric, per tensor).

    A plain object rather than a module, so the quantized module keeps the float
    architecture (and state-dict keys) of its recipe.
    """

    def __init__(self, bits: int, scale: float, zero_point: int):
        self.bits, self.zero_point = bits, zero_point
        self.scale = torch.tensor(scale, dtype=torch.float32)

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (fake_quantize(args[0], self.scale, self.zero_point, self.bits), *args[1:])


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: float | torch.Tensor,
                  bits: int) -> torch.Tensor:
    """``(clamp(round(x / scale) + z, 0, 2^bits − 1) − z) · scale`` (no gradient trick)."""
    codes = torch.clamp(torch.round(x / scale) + zero_point, 0, 2 ** bits - 1)
    return (codes - zero_point) * scale


def decode_module(recipe: dict[str, Any], layout: dict[str, Any],
                  packed: dict[str, Any]) -> nn.Module:
    """Rebuild the float architecture and load the dequantized state (the ``quantized`` builder)."""
    module = build(recipe)
    state = {name: dequantize_entry(name, entry, packed)
             for name, entry in layout["parameters"].items()}
    module.load_state_dict(state, strict=True)
    layers = dict(module.named_modules())
    for layer_name, spec in layout.get("activations", {}).items():
        layers[layer_name].register_forward_pre_hook(
            InputQuantizer(spec["bits"], spec["scale"], spec["zero_point"]))
    return module.eval()


# --- building an artifact -------------------------------------------------------------------

def quantizable_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, layer) of every Linear/Conv layer, in module order: the weights we quantize."""
    for name, layer in module.named_modules():
        if isinstance(layer, LAYER_TYPES):
            yield name, layer


class Packer:
    """Collects the packed tensors and layout of one quantized model."""

    def __init__(self, model: Model):
        self.model = model
        self.packed: dict[str, torch.Tensor] = {}
        self.parameters: dict[str, dict[str, Any]] = {}
        self.activations: dict[str, dict[str, Any]] = {}

    def uniform(self, name: str, codes: np.ndarray, scale: Any, zero_point: Any | None,
                bits: int, shape: list[int]) -> None:
        """Store integer codes; `zero_point` None means the symmetric grid (z = 2^(bits−1))."""
        self._codes(name, codes, bits)
        self.packed[f"{name}.scale"] = _f32(scale)
        if zero_point is not None:
            self.packed[f"{name}.zero_point"] = torch.as_tensor(
                np.asarray(zero_point, dtype=np.uint8).reshape(-1))
        self.parameters[name] = {"scheme": "uniform", "bits": bits, "shape": list(shape),
                                 "symmetric": zero_point is None}

    def codebook(self, name: str, codes: np.ndarray, scale: Any, book_name: str, book: Any,
                 bits: int, shape: list[int], block_size: int | None = None) -> None:
        """Store codes into a (shared, named) codebook, scaled per row or per block."""
        self._codes(name, codes, bits)
        self.packed[f"{name}.scale"] = _f32(scale)
        book_tensor = _f32(book)
        if book_name in self.packed and not torch.equal(self.packed[book_name], book_tensor):
            raise ValueError(f"two different codebooks named '{book_name}'")
        self.packed[book_name] = book_tensor
        entry: dict[str, Any] = {"scheme": "codebook", "bits": bits, "shape": list(shape),
                                 "book": book_name}
        if block_size is not None:
            entry["block_size"] = block_size
        self.parameters[name] = entry

    def float(self, name: str, value: Any) -> None:
        """Store a parameter as float32 (e.g. a bias a method has corrected)."""
        self.packed[name] = torch.as_tensor(value, dtype=torch.float32).detach().clone()
        self.parameters[name] = {"scheme": "float"}

    def input_quantizer(self, layer: str, bits: int, scale: float, zero_point: int) -> None:
        self.activations[layer] = {"bits": bits, "scale": float(np.float32(scale)),
                                   "zero_point": int(zero_point)}

    def _codes(self, name: str, codes: np.ndarray, bits: int) -> None:
        codes = np.asarray(codes)
        if codes.size and (codes.min() < 0 or codes.max() >= 2 ** bits):
            raise ValueError(f"parameter '{name}': codes out of range for {bits} bits")
        self.packed[f"{name}.codes"] = torch.from_numpy(pack_codes(codes.astype(np.uint8), bits))

    def finish(self, method: str, **meta: Any) -> QuantizedModel:
        """Store every parameter not quantized yet as float32 and assemble the model."""
        for name, value in self.model.module.state_dict().items():
            if name not in self.parameters:
                self.packed[name] = value.detach().to(torch.float32).clone()
                self.parameters[name] = {"scheme": "float"}
        layout = {"decoder": DECODER, "method": method, "parameters": self.parameters,
                  "activations": self.activations}
        return QuantizedModel.assemble(self.model.recipe, self.packed, layout,
                                       {**self.model.meta, "quantizer": method, **meta})


def _f32(value: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(value, dtype=np.float32).reshape(-1))


# --- size ----------------------------------------------------------------------------------

def size_metrics(quantized: QuantizedModel, model: Model) -> dict[str, float]:
    """``bits_per_parameter`` (all stored tensor bytes · 8 / parameters), ``size_ratio``
    (encoded artifact bytes / encoded fp32 model bytes) and ``bytes``."""
    stored = sum(t.numel() * t.element_size() for t in quantized.packed.values())
    n_params = sum(t.numel() for t in model.module.state_dict().values())
    size = len(encode(quantized)[2])
    return {"bits_per_parameter": 8.0 * stored / n_params,
            "size_ratio": size / len(encode(model)[2]), "bytes": float(size)}
