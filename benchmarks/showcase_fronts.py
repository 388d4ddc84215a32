"""The showcase's fronts, bayesopt against random search, one panel per seed.

Reads the JSON lines `benchmarks/multi_objective.py --showcase --log` wrote (each trial's
accuracy and bytes) and draws, for every seed both tuners ran, the non-dominated trials
after ``--trials`` trials as a staircase, with the hypervolume at the benchmark's
reference point in each panel's title. It shows what the hypervolume table summarises:
where on the front the two searches differ. A row read later replaces one read earlier for
the same seed and tuner, so name a rerun's log last.

Usage (repository root; matplotlib is not a flowopt dependency)::

    python benchmarks/showcase_fronts.py benchmarks/logs/showcase_random_*.jsonl \
        benchmarks/logs/showcase_bayesopt_random_56789.jsonl \
        benchmarks/logs/showcase_bayesopt_worst_*.jsonl --out docs/figures/showcase_fronts.png
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from flowopt.tuning.pareto import hypervolume, pareto_mask, to_loss

TUNERS = {"tuner.bayesopt": ("bayesopt", "#1f77b4"), "tuner.random": ("random", "#d62728")}


MODES = ["max", "min"]  # accuracy, bytes


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points (flowopt's own Pareto filter), each once, by bytes ascending."""
    keep = pareto_mask(to_loss(points, MODES))
    return sorted({p for p, kept in zip(points, keep) if kept}, key=lambda p: p[1])


def showcase_hypervolume(points: list[tuple[float, float]], reference: tuple[float, ...]) -> float:
    """The benchmark's hypervolume of (accuracy, bytes) points at `reference`."""
    return hypervolume(to_loss(points, MODES), to_loss([reference], MODES)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/showcase_fronts.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs: dict[int, dict[str, dict]] = {}
    for log in args.logs:
        for line in log.read_text().splitlines():
            row = json.loads(line)
            if row.get("problem") == "showcase" and row["tuner"] in TUNERS:
                runs.setdefault(row["seed"], {})[row["tuner"]] = row
    seeds = sorted(s for s, r in runs.items() if len(r) == len(TUNERS))
    cols = min(5, len(seeds))
    rows = math.ceil(len(seeds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), sharey=True,
                             squeeze=False)
    for ax, seed in zip(axes.flat, seeds):
        titles = []
        for tuner, (label, colour) in TUNERS.items():
            row = runs[seed][tuner]
            reference = tuple(row["reference"])
            points = [(a, s) for a, s in row["values"][:args.trials]
                      if math.isfinite(a) and math.isfinite(s)]
            stairs = front(points)
            xs = [s / 1000 for _, s in stairs]
            ys = [a for a, _ in stairs]
            ax.step(xs, ys, where="post", color=colour, label=label)
            ax.scatter(xs, ys, color=colour, s=10)
            titles.append(f"{label[0]} {showcase_hypervolume(points, reference):.0f}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axhline(reference[0], color="grey", lw=0.6, ls=":")
        ax.axvline(reference[1] / 1000, color="grey", lw=0.6, ls=":")
        ax.set_title(f"seed {seed}: HV " + ", ".join(titles), fontsize=8)
        ax.set_ylim(0.90, 0.985)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(seeds):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.supxlabel("bytes of the quantized model (thousands, log scale)", fontsize=9)
    fig.supylabel("validation accuracy", fontsize=9)
    fig.suptitle(f"pareto_quantize.yaml: the front after {args.trials} trials "
                 "(dotted: the reference point)", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(seeds)} seeds)")


if __name__ == "__main__":
    main()
