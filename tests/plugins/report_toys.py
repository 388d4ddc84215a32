"""A node that logs a loss series and returns a metric, for the report tests."""
import flowopt as fo


@fo.node("toy.curve", metrics=["value"])
def curve(ctx: fo.Context, x: float = 0.0) -> float:
    for step in range(1, 6):
        ctx.log_metric("loss", (x - 1.0) ** 2 + 1.0 / step, step)
    return (x - 1.0) ** 2
