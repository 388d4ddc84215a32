"""Population Based Training (Jaderberg et al. 2017): ``tuner.pbt``.

Layers, each usable without the next: `policy` (pure exploit/explore decisions),
`population` (the asynchronous controller over a small `Trainable` protocol),
`training` (a `Trainable` over any optimizer kind's declared trainer), `checkpoints`
(states in a recorder), `node` and `session` (the pipeline node). Nothing here imports
torch at import time.
"""
