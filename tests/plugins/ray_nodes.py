"""Node kinds for the Ray executor's tests: where a node ran, what it was given, and
workers that die or hang on purpose."""
import os
import signal
import time
from pathlib import Path

import flowopt as fo


def _where() -> float:
    """This process's Ray node, as a number (a metric must be a float)."""
    import ray

    return float(int(ray.get_runtime_context().get_node_id()[:12], 16))


@fo.node("raytest.where", metrics=["value", "pid", "node", "threads"])
def where(ctx: fo.Context, x: float = 0.0, pause: float = 0.0) -> dict:
    time.sleep(pause)
    for step in range(3):
        ctx.log_metric("curve", x * step, step)
    return {"value": (x - 0.3) ** 2, "pid": float(os.getpid()), "node": _where(),
            "threads": float(ctx.threads)}


@fo.node("raytest.die_once", metrics=["value"])
def die_once(marker: str = "", always: bool = False) -> float:
    """Kills its own worker process the first time (or every time)."""
    path = Path(marker)
    if always or not path.exists():
        path.write_text("died", encoding="utf-8")
        os.kill(os.getpid(), signal.SIGKILL)
    return 1.0


@fo.node("raytest.hang", metrics=["value"])
def hang(done: str = "", seconds: float = 30.0) -> float:
    """Sleeps, then leaves a file behind: a cancelled task never writes it."""
    time.sleep(seconds)
    Path(done).write_text("finished", encoding="utf-8")
    return 1.0
