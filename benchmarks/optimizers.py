"""One optimizer step on a flat parameter: flowopt's fused numba kernels vs torch and bitsandbytes.

Run from the repository root with the benchmark venv (it has bitsandbytes)::

    flock /tmp/flowopt-bench.lock /work/benchvenv/bin/python benchmarks/optimizers.py

For each size (10M and 50M float32 parameters by default) it prints one Markdown table:
step time (best of N, wall clock), its ratio to torch's fused float32 Adam, state bytes,
bytes each step must touch at least, the bandwidth that implies and its share of the
machine's in-place bandwidth (``a += b`` on two float32 tensors, the faster of torch
with 2 threads and numpy, measured in the same run), and the peak temporaries of a step (RSS sampled every 0.5 ms in a
background thread; numpy/torch free big buffers back to the OS, so spikes show). Then the
numba compile time of the flowopt kernels (fresh cache, in a subprocess) and the load time
from numba's on-disk cache (a second process), docs/kernels.md habit 6.

Peers: ``torch.optim.Adam`` (``foreach=True`` and ``fused=True``, float32 states), a
foreach torch Lion written below from the paper's Program 1, and bitsandbytes'
``Adam8bit``/``Lion8bit`` (its CPU backend; block size 256, its default, vs flowopt's 2048).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

MB = 1e6


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled in a thread."""

    def __enter__(self):
        self.base = self.peak = rss()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, rss())
            time.sleep(0.0005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.extra = max(0, self.peak - self.base)


def timed(step, repeats: int) -> tuple[float, float]:
    """(best seconds, peak temporaries in bytes) over `repeats` calls after one warm-up call."""
    step()
    best, extra = float("inf"), 0
    for _ in range(repeats):
        with PeakRSS() as peak:
            t = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t)
        extra = max(extra, peak.extra)
    return best, extra


def torch_lion_foreach(params, grads, exp_avgs, lr, beta1, beta2, weight_decay):
    """Lion (Chen et al. 2023, Program 1) with torch's multi-tensor foreach ops."""
    import torch

    update = torch._foreach_mul(exp_avgs, beta1)
    torch._foreach_add_(update, grads, alpha=1 - beta1)
    torch._foreach_sign_(update)
    torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_add_(params, update, alpha=-lr)
    torch._foreach_mul_(exp_avgs, beta2)
    torch._foreach_add_(exp_avgs, grads, alpha=1 - beta2)


def bench_size(n: int, repeats: int, peer_repeats: int, block_size: int) -> list[dict]:
    import torch

    from flowopt.nodes.optimizer import kernels as K

    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n, dtype=np.float32)
    g = (rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3))
    nb = -(-n // block_size)
    rows = []

    a, b = torch.from_numpy(p0.copy()), torch.from_numpy(g)
    t_inplace = min(timed(lambda: a.add_(b), repeats)[0],  # torch's threads stall on a busy machine
                    timed(lambda: np.add(a.numpy(), g, out=a.numpy()), repeats)[0])
    inplace_bw = 12 * n / t_inplace
    rows.append(dict(name="in-place a += b (best of torch, numpy: reference bandwidth)", t=t_inplace, state=0, touched=12, extra=0))
    del a

    p = p0.copy()
    state = K.adam8bit_state(n, block_size)
    step = [0]

    def adam8():
        step[0] += 1
        K.adam8bit_step(p, g, *state, step=step[0], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                        weight_decay=0.0, decoupled=True, block_size=block_size)

    t, extra = timed(adam8, repeats)
    rows.append(dict(name=f"flowopt adam8bit (numba, block {block_size})", t=t,
                     state=2 * n + 8 * nb, touched=16, extra=extra))
    del state

    mstate = K.momentum8bit_state(n, block_size)
    mstep = [0]

    def momentum8():
        mstep[0] += 1
        K.momentum8bit_step(p, g, *mstate, step=mstep[0] + 1, lr=1e-3, momentum=0.9,
                            dampening=0.0, nesterov=False, weight_decay=0.0,
                            block_size=block_size)

    t, extra = timed(momentum8, repeats)
    rows.append(dict(name=f"flowopt momentum8bit (numba, block {block_size})", t=t,
                     state=n + 4 * nb, touched=14, extra=extra))
    del mstate

    m = np.zeros(n, np.float32)
    t, extra = timed(lambda: K.lion_step(p, g, m, lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.1), repeats)
    rows.append(dict(name="flowopt lion (numba, fp32)", t=t, state=4 * n, touched=20, extra=extra))
    del m

    for label, kw in (("foreach", {"foreach": True}), ("fused=True", {"fused": True})):
        w = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        w.grad = torch.from_numpy(g)
        opt = torch.optim.Adam([w], lr=1e-3, **kw)
        t, extra = timed(opt.step, repeats)
        rows.append(dict(name=f"torch Adam fp32 ({label})", t=t, state=8 * n, touched=28, extra=extra))
        del opt, w

    w, mt = torch.from_numpy(p0.copy()), torch.zeros(n)
    gt = torch.from_numpy(g)
    t, extra = timed(lambda: torch_lion_foreach([w], [gt], [mt], 1e-4, 0.9, 0.99, 0.1), repeats)
    rows.append(dict(name="torch Lion fp32 (foreach)", t=t, state=4 * n, touched=20, extra=extra))
    del w, mt

    try:
        import bitsandbytes as bnb
    except Exception as exc:  # noqa: BLE001 - any import failure means: no peer
        print(f"bitsandbytes unavailable: {exc}", file=sys.stderr)
    else:
        for cls in (bnb.optim.Adam8bit, bnb.optim.Lion8bit):
            w = torch.nn.Parameter(torch.from_numpy(p0.copy()))
            w.grad = torch.from_numpy(g)
            opt = cls([w], lr=1e-4)
            t, extra = timed(opt.step, peer_repeats)
            state_bytes = sum(v.numel() * v.element_size() for k, v in opt.state[w].items()
                              if torch.is_tensor(v) and not k.startswith("qmap"))
            rows.append(dict(name=f"bitsandbytes {cls.__name__} (CPU)", t=t, state=state_bytes,
                             touched=16 if "Adam" in cls.__name__ else 14, extra=extra))
            del opt, w
    for r in rows:
        r["bw"] = r["touched"] * n / r["t"]
        r["bw_share"] = r["bw"] / inplace_bw
    return rows


def print_table(n: int, rows: list[dict]) -> None:
    fused = next(r for r in rows if "fused=True" in r["name"])
    print(f"\n### {n / 1e6:g}M parameters\n")
    print("| step | ms | × torch fused Adam time | state MB | state / fp32 Adam | bytes/param touched | GB/s | of in-place BW | temporaries MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['t'] * 1e3:.1f} | {r['t'] / fused['t']:.2f} | {r['state'] / MB:.0f} | "
              f"{r['state'] / fused['state']:.1%} | {r['touched']} | {r['bw'] / 1e9:.1f} | {r['bw_share']:.0%} | "
              f"{r['extra'] / MB:.0f} |")
    by = {r["name"].split(" (")[0]: r for r in rows}
    adam, lion = by["flowopt adam8bit"], by["flowopt lion"]
    print(f"\nadam8bit: {adam['t'] / fused['t']:.2f}× torch fused Adam's time (target ≤ 1.0), "
          f"{adam['state'] / fused['state']:.1%} of its state (target ≤ 26%)", end="")
    if "bitsandbytes Adam8bit" in by:
        print(f", {by['bitsandbytes Adam8bit']['t'] / adam['t']:.1f}× faster than bitsandbytes (target ≥ 10)", end="")
    print(f"\nlion: {by['torch Lion fp32']['t'] / lion['t']:.1f}× faster than foreach torch Lion (target ≥ 5)")
    print("roofline (bytes a step must touch / time, against the in-place bandwidth above): "
          + ", ".join(f"{name} {by[name]['bw'] / 1e9:.1f} GB/s = {by[name]['bw_share']:.0%}"
                      for name in ("flowopt adam8bit", "flowopt momentum8bit", "flowopt lion",
                                   "torch Adam fp32")))


COMPILE_PROBE = """
import time, numpy as np
t0 = time.perf_counter()
from flowopt.nodes.optimizer import kernels as K
t1 = time.perf_counter()
n, bs = 10000, 2048
p, g = np.ones(n, np.float32), np.ones(n, np.float32)
K.adam8bit_step(p, g, *K.adam8bit_state(n, bs), step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled=True, block_size=bs)
t2 = time.perf_counter()
K.lion_step(p, g, np.zeros(n, np.float32), lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def compile_times() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):  # first: empty cache (compiles); second: loads from the cache
            out = subprocess.run([sys.executable, "-c", COMPILE_PROBE], env=env, capture_output=True,
                                 text=True, check=True)
            runs.append([float(v) for v in out.stdout.split()])
    (imp0, adam0, lion0), (imp1, adam1, lion1) = runs
    print("\n| numba, first call in a process | import kernels s | adam8bit s | lion s |\n|---|---:|---:|---:|")
    print(f"| empty cache (compiles) | {imp0:.2f} | {adam0:.2f} | {lion0:.2f} |")
    print(f"| second process (on-disk cache) | {imp1:.2f} | {adam1:.3f} | {lion1:.3f} |")


def alternating(steps: dict, n: int, repeats: int) -> dict:
    """Best one-thread CPU time per parameter (ns) of each step, the steps taking turns
    (round-robin, ``repeats`` rounds after a warm-up) so that a neighbour's load on the
    shared machine falls on all of them alike."""
    for fn in steps.values():
        fn()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, fn in steps.items():
            t = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t)
    return {name: t / n * 1e9 for name, t in best.items()}


def profile(n: int = 8_000_000, repeats: int = 15) -> None:
    """Where an adam8bit step's time goes: its parts run alone, one thread, CPU time.

    CPU time (``process_time``) rather than wall-clock, so a busy machine inflates the
    numbers less, and the steps alternate (`alternating`); the standalone parts also read
    and write their own arrays, so their sum slightly exceeds the fused step.
    """
    import numba
    import torch

    from flowopt.nodes.blockwise.codebook import codebook
    from flowopt.nodes.blockwise.quantize import dequantize_blockwise, quantize_blockwise
    from flowopt.nodes.optimizer import kernels as K

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3)
    state = K.adam8bit_state(n, 2048)
    step = [0]

    def adam8():
        step[0] += 1
        K.adam8bit_step(p, g, *state, step=step[0], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                        weight_decay=0.0, decoupled=True, block_size=2048)

    adam8()
    signed, unsigned = codebook("dynamic", True), codebook("dynamic", False)
    m = dequantize_blockwise(state[0], state[1], signed, 2048)
    v = dequantize_blockwise(state[2], state[3], unsigned, 2048)
    out, codes, absmax = np.empty(n, np.float32), np.empty(n, np.uint8), np.empty(-(-n // 2048), np.float32)
    w = torch.nn.Parameter(torch.from_numpy(p.copy()))
    w.grad = torch.from_numpy(g)
    fused = torch.optim.Adam([w], lr=1e-3, fused=True)
    mstate = K.momentum8bit_state(n, 2048)
    exp_avg = np.zeros(n, np.float32)
    q = p.copy()
    steps = {
        "flowopt adam8bit step (whole)": adam8,
        "flowopt momentum8bit step": lambda: K.momentum8bit_step(
            q, g, *mstate, step=2, lr=1e-3, momentum=0.9, dampening=0.0, nesterov=False,
            weight_decay=0.0, block_size=2048),
        "flowopt lion step": lambda: K.lion_step(q, g, exp_avg, lr=1e-4, beta1=0.9, beta2=0.99,
                                                 weight_decay=0.1),
        "in-place a += b (numpy, 12 bytes/param: bandwidth reference)": lambda: np.add(q, g, out=q),
        "  dequantize m and v (2 × dequantize_blockwise)": lambda: (
            dequantize_blockwise(state[0], state[1], signed, 2048, out),
            dequantize_blockwise(state[2], state[3], unsigned, 2048, out)),
        "  requantize m and v (2 × quantize_blockwise: absmax, divide, encode)": lambda: (
            quantize_blockwise(m, signed, 2048, codes, absmax),
            quantize_blockwise(v, unsigned, 2048, codes, absmax)),
        "torch Adam fp32 fused=True step": fused.step,
        "np.copyto (8 bytes/param, memory reference)": lambda: np.copyto(out, p),
    }
    rows = alternating(steps, n, repeats)
    print(cpu_line())
    print(f"\n| part of one step, 1 thread, {n / 1e6:g}M params, CPU time, best of {repeats} "
          "alternating | ns/param "
          "| × torch fused Adam | bytes/param touched | GB/s | of in-place BW |\n|---|---:|---:|---:|---:|---:|")
    touched = {"flowopt adam8bit step (whole)": 16, "flowopt momentum8bit step": 14,
               "flowopt lion step": 20, "torch Adam fp32 fused=True step": 28,
               "in-place a += b (numpy, 12 bytes/param: bandwidth reference)": 12}
    fused = rows["torch Adam fp32 fused=True step"]
    inplace = 12 / rows["in-place a += b (numpy, 12 bytes/param: bandwidth reference)"]
    for name, t in rows.items():
        b = touched.get(name)
        extra = (f"{b} | {b / t:.1f} | {b / t / inplace:.0%}" if b else " | | ")
        print(f"| {name} | {t:.2f} | {t / fused:.2f} | {extra} |")


def cpu_line() -> str:
    """The CPU's model name and the vector features the kernels choose paths by."""
    import llvmlite.binding as llvm

    from flowopt.nodes.blockwise import avx512, jit

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = [f for f, on in llvm.get_host_cpu_features().items() if on and f in
             ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vbmi")]
    lanes = ("8 lanes by division" if jit.HAS_AVX2 and avx512.AMD_ZEN else "16 lanes"
             if avx512.HAS_AVX512 else "8 lanes" if jit.HAS_AVX2 else "1 lane")
    paths = (f"encode {lanes}, "
             f"decode {'vpermi2b' if avx512.HAS_VBMI else 'scalar'}, "
             f"Adam update {'16 lanes' if avx512.HAS_AVX512 else 'auto-vectorised'}"
             f"{', decode + update + absmax in one pass (adam64)' if avx512.HAS_VBMI else ''}")
    return f"CPU: {model} (LLVM host {llvm.get_host_cpu_name()}; {' '.join(sorted(flags))}); {paths}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[10e6, 50e6])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peer-repeats", type=int, default=2, help="for bitsandbytes (slow)")
    ap.add_argument("--block-size", type=int, default=2048)
    ap.add_argument("--profile", action="store_true",
                    help="only the one-thread CPU-time profile (steps alternating; ≈ 1 min)")
    ap.add_argument("--quick", action="store_true",
                    help="the timing tables only: skip the numba compile-time probe")
    args = ap.parse_args()
    if args.profile:
        profile()
        return
    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    print(f"threads: {args.threads}, torch {torch.__version__}, numba {numba.__version__}, "
          f"load average at start: {os.getloadavg()[0]:.1f}")
    print(cpu_line())
    for n in args.sizes:
        print_table(int(n), bench_size(int(n), args.repeats, args.peer_repeats, args.block_size))
    if not args.quick:
        compile_times()


if __name__ == "__main__":
    main()
