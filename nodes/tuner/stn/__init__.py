"""Self-Tuning Networks (MacKay et al. 2019; Delta-STN, Bae & Grosse 2020): ``tuner.stn``.

Layers, each usable without the next: `flowopt.nodes.stn_layers` (the gated layers and
models), `loop` (the alternating weight / hyperparameter loop on datasets, no pipeline
needed), `node` (the tuner kind and its compile-time checks), `session` (one execution
of the node). The weight optimizer is built by the optimizer kind's own constructor
(`flowopt.nodes.optimizer.common.optimizer_for`), never by a table of STN's own.
Nothing here imports torch at import time.
"""
