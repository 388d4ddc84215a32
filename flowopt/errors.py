"""One small error hierarchy; each error knows its exit code and renders as one line.

Exit codes (the CLI contract, docs/cli.md):
    0  success
    1  the pipeline ran and a node failed
    2  invalid input or usage (nothing was executed, nothing written to the store)
    130  the run was interrupted (Ctrl-C); completed nodes are kept and reused on re-run
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_NODE_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


class FlowoptError(Exception):
    """Base class: a message for humans plus an optional hint."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class SpecError(FlowoptError):
    """Invalid pipeline input, located at ``file:line`` and a dotted key."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, hint: str | None = None):
        self.file, self.line, self.key = file, line, key
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = ", ".join(p for p in (where, f"key '{key}'" if key else "") if p)
        super().__init__(f"{prefix}: {message}" if prefix else message, hint=hint)
        self.detail = message


class GraphError(SpecError):
    """The pipeline parses but is not a valid graph (unknown kind, bad binding, cycle...)."""


class StoreError(FlowoptError):
    """The store cannot be opened or queried as asked."""


class NoSuchValue(FlowoptError, KeyError):
    """`RunResult.value` named a node or port the run does not have; the message lists
    what exists. A `KeyError` too, so ``except KeyError`` keeps working."""

    __str__ = FlowoptError.__str__


class NodeFailed(FlowoptError):
    """A node raised while executing; the run is recorded as failed."""

    exit_code = EXIT_NODE_FAILED

    def __init__(self, node_id: str, error: BaseException):
        self.node_id, self.error = node_id, error
        super().__init__(f"while executing node '{node_id}': {type(error).__name__}: {error}")


class Interrupted(FlowoptError):
    """The run was cancelled (Ctrl-C or a cancel request)."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted"):
        super().__init__(message)
