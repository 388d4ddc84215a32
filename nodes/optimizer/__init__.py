"""Optimizer kinds: each trains a copy of its input model with the shared loop.

Full-precision state (`standard`): ``optimizer.sgd``, ``optimizer.adam``,
``optimizer.adamw`` (torch.optim), ``optimizer.lion``, ``optimizer.adamp``,
``optimizer.diffgrad``, ``optimizer.stable_spam``. Eight-bit state (`lowbit`):
``optimizer.adam8bit``, ``optimizer.adamw8bit``, ``optimizer.momentum8bit``.

Modules: `common` (field types, the shared fields, `train`), `schedules` (the ``schedule``
field), `training` (the loop, checkpoints; imports torch), and one module per torch
optimizer class (in `algorithms`: `lion`, `adamp`, `diffgrad`, `stable_spam`, `eightbit`), imported only
when a node runs. `kernels` holds the numba kernels of the CPU paths.

Ports: inputs ``model`` (Model), ``data`` (Dataset), ``loss`` (Loss), optional ``val``
(Dataset); output ``model``. The shared ``with:`` fields are described in
`common.SHARED_FIELDS_DOC`: ``steps`` (200), ``batch_size`` (64), ``schedule``
(constant), ``on_nonfinite`` (fail), ``eval_every`` (50), ``device`` (auto). The training
loss is logged every 10 steps as the metric ``NODE.loss`` and the learning rate every step
as ``NODE.lr``.
"""
from __future__ import annotations

from .lowbit import adam8bit, adamw8bit, momentum8bit
from .standard import adam, adamp, adamw, diffgrad, lion, sgd, stable_spam

__all__ = ["adam", "adam8bit", "adamp", "adamw", "adamw8bit", "diffgrad", "lion",
           "momentum8bit", "sgd", "stable_spam"]
