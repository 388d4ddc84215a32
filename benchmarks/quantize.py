"""Block-wise 8-bit quantization of 64M float32 values: flowopt (numba) vs torch vs bitsandbytes.

Run from the repository root with the benchmark venv (it has bitsandbytes)::

    flock /tmp/flowopt-bench.lock /work/benchvenv/bin/python benchmarks/quantize.py

Signed dynamic map, block size 2048, 2 threads for everyone. Prints one Markdown table:
time (best of N, wall clock) to quantize and to dequantize, GB/s of float32 values
(4 bytes × n / time), speed ratios, and each as a share of this machine's copy bandwidth
measured in the same run (the faster of ``dst.copy_(src)`` in torch with the same
threads and single-threaded ``np.copyto``, counted the same way). Then correctness:
flowopt's codes against the searchsorted reference on a sample and against the torch
implementation in full, and how many of bitsandbytes' CPU codes are not the nearest
code (strictly farther than the nearest; ties excluded).

The torch implementation is the vectorised one a user would write: per-block absmax,
divide, ``torch.bucketize`` against the map's thresholds (``right=True`` gives the
number of thresholds ≤ x, which is flowopt's code) and a gather to dequantize.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def torch_quantize(x, thresholds, zero_code, block_size):
    import torch

    blocks = x.view(-1, block_size)
    absmax = blocks.abs().amax(dim=1)
    codes = torch.bucketize(blocks / absmax[:, None], thresholds, right=True).to(torch.uint8)
    codes[absmax == 0] = zero_code
    return codes.view(-1), absmax


def torch_dequantize(codes, absmax, values, block_size):
    return (values[codes.long()].view(-1, block_size) * absmax[:, None]).view(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64 * 2 ** 20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peer-repeats", type=int, default=3)
    ap.add_argument("--block-size", type=int, default=2048)
    args = ap.parse_args()
    n, bs = args.n - args.n % args.block_size, args.block_size  # torch's view needs whole blocks

    import numba
    import torch

    from flowopt.nodes.blockwise.codebook import codebook, nearest_code_reference
    from flowopt.nodes.blockwise.quantize import dequantize_blockwise, quantize_blockwise

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    print(f"n = {n:,} float32, block {bs}, threads {args.threads}, torch {torch.__version__}, "
          f"numba {numba.__version__}, load average at start {os.getloadavg()[0]:.1f}")

    book = codebook("dynamic", True, 8)
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    xt = torch.from_numpy(x)
    fp32_bytes = 4 * n
    rows = {}

    dst = torch.empty_like(xt)
    copy = min(best_of(lambda: dst.copy_(xt), args.repeats),  # torch's threads stall when the
               best_of(lambda: np.copyto(dst.numpy(), x), args.repeats))  # machine is oversubscribed
    rows["copy"] = (copy, copy)
    del dst

    codes, absmax = np.empty(n, np.uint8), np.empty(n // bs, np.float32)
    out = np.empty(n, np.float32)
    tq = best_of(lambda: quantize_blockwise(x, book, bs, codes, absmax), args.repeats)
    td = best_of(lambda: dequantize_blockwise(codes, absmax, book, bs, out), args.repeats)
    rows["flowopt (numba)"] = (tq, td)

    thresholds, values = torch.from_numpy(book.thresholds.copy()), torch.from_numpy(book.values.copy())
    tq = best_of(lambda: torch_quantize(xt, thresholds, book.zero_code, bs), args.peer_repeats)
    t_codes, t_absmax = torch_quantize(xt, thresholds, book.zero_code, bs)
    td = best_of(lambda: torch_dequantize(t_codes, t_absmax, values, bs), args.peer_repeats)
    rows["torch (bucketize, vectorised)"] = (tq, td)
    torch_mismatch = int((t_codes.numpy() != codes).sum())
    del t_codes

    bnb_note = "bitsandbytes: not importable"
    try:
        import bitsandbytes.functional as F
    except Exception as exc:  # noqa: BLE001 - any import failure means: no peer
        bnb_note = f"bitsandbytes: not importable ({exc})"
    else:
        code = F.create_dynamic_map(signed=True)
        tq = best_of(lambda: F.quantize_blockwise(xt, code=code, blocksize=bs), args.peer_repeats)
        b_codes, state = F.quantize_blockwise(xt, code=code, blocksize=bs)
        td = best_of(lambda: F.dequantize_blockwise(b_codes, state), args.peer_repeats)
        rows["bitsandbytes (CPU)"] = (tq, td)
        normalized = (x.reshape(-1, bs) / absmax[:, None]).reshape(-1)
        bvals = code.numpy()[b_codes.numpy().astype(np.intp)]
        ours = book.values[codes]
        worse = np.abs(bvals - normalized).astype(np.float64) > np.abs(ours - normalized).astype(np.float64)
        bnb_note = (f"bitsandbytes: {int(worse.sum()):,} of {n:,} codes ({worse.mean():.3%}) are not the "
                    f"nearest code; absmax identical: {np.array_equal(state.absmax.numpy(), absmax)}")
        del b_codes, bvals, ours, worse, normalized

    sample = np.random.default_rng(1).choice(n // bs, 256, replace=False)
    idx = (sample[:, None] * bs + np.arange(bs)).reshape(-1)
    ref = nearest_code_reference(x[idx] / np.repeat(absmax[sample], bs), book.values)
    ref_mismatch = int((ref != codes[idx]).sum())

    flow_q, flow_d = rows["flowopt (numba)"]
    copy = rows["copy"][0]
    print("\n| implementation | quantize ms | GB/s fp32 | flowopt speed-up | of copy BW | "
          "dequantize ms | GB/s fp32 | flowopt speed-up | of copy BW |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (tq, td) in rows.items():
        label = "copy (best of torch `copy_` and `np.copyto`: reference bandwidth)" if name == "copy" else name
        print(f"| {label} | {tq * 1e3:.1f} | {fp32_bytes / tq / 1e9:.1f} | {tq / flow_q:.1f}× | {copy / tq:.0%} | "
              f"{td * 1e3:.1f} | {fp32_bytes / td / 1e9:.1f} | {td / flow_d:.1f}× | {copy / td:.0%} |")
    torch_q = rows["torch (bucketize, vectorised)"][0]
    print(f"\nquantize: {torch_q / flow_q:.1f}× torch (target ≥ 40)", end="")
    if "bitsandbytes (CPU)" in rows:
        print(f", {rows['bitsandbytes (CPU)'][0] / flow_q:.1f}× bitsandbytes (target ≥ 7)", end="")
    print(f"\ndequantize: {copy / flow_d:.0%} of copy bandwidth (target ≥ 40%)")
    print(f"flowopt codes vs searchsorted reference on {idx.size:,} sampled values: {ref_mismatch} differ; "
          f"vs torch bucketize on all values: {torch_mismatch} differ")
    print(bnb_note)


if __name__ == "__main__":
    main()
