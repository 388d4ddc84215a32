"""Self-Tuning Networks (MacKay et al. 2019; Delta-STN, Bae & Grosse 2020): ``tuner.stn``.

Layers, each usable without the next: `flowopt.nodes.stn_layers` (the gated layers and
models), `weights` (the torch optimizer of any optimizer kind, from its config), `loop`
(the alternating weight / hyperparameter loop on datasets, no pipeline needed), `node`
(the tuner kind and its compile-time checks), `session` (one execution of the node).
Nothing here imports torch at import time.
"""
