"""Where a path in a pipeline points: relative to the pipeline file, or to the working
directory for a pipeline built in Python.

Every path a pipeline file names (``plugins:``, any ``with:`` field typed as a path,
such as ``data.csv``'s ``path``) is relative to the folder of that file, so a pipeline
runs the same from any working directory; a pipeline built in Python has no file, and
its paths are relative to the working directory. The compiler resolves them before
validation (a missing file is invalid input at its line), nodes receive absolute paths,
and the cache key sees each path as written, plus the file's content: moving a project,
or sharing a store between checkouts in different folders, keeps the cache.
"""
from __future__ import annotations

import functools
import typing
from pathlib import Path, PurePath
from typing import Any


@functools.cache
def path_fields(config_model: Any) -> tuple[str, ...]:
    """The fields of a kind's config model typed as a filesystem path (`Path`, `FilePath`,
    ``Path | None`` ...). Cached per model: a kind's fields do not change, and compiling
    asks once per node."""
    def is_path(annotation: Any) -> bool:
        if isinstance(annotation, type):
            return issubclass(annotation, PurePath)
        return any(is_path(arg) for arg in typing.get_args(annotation))

    return tuple(name for name, info in config_model.model_fields.items()
                 if is_path(info.annotation))


def resolve(text: str, base_dir: Path | None) -> Path:
    """A path from a pipeline, absolute: relative to the pipeline file's folder
    (`base_dir`), or to the working directory when there is no file; ``~`` is home."""
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path.absolute()
