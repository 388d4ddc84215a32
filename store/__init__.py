"""flowopt's SQL store (installed as ``flowopt.store``): runs, lineage, metrics, artifacts."""
if __name__ != "flowopt.store":  # the repository root holds store/; only the mapped name is valid
    raise ImportError(f"import this package as flowopt.store, not {__name__}")

from .records import (ArtifactRecord, Comparison, Lineage, LineageEntry, MetricPoint,  # noqa: E402
                      NodeRecord, RunDetail, RunRecord, Runs, SourceFile, TrialRecord)
from .store import Store  # noqa: E402

__all__ = ["ArtifactRecord", "Comparison", "Lineage", "LineageEntry", "MetricPoint", "NodeRecord",
           "RunDetail", "RunRecord", "Runs", "SourceFile", "Store", "TrialRecord"]
