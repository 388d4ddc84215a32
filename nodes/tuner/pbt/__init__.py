"""Population Based Training (Jaderberg et al. 2017): ``tuner.pbt``.

Layers, each usable without the next: `policy` (pure exploit/explore decisions),
`population` (the asynchronous controller over a small `Trainable` protocol), `toy`
(the paper's toy problem). Nothing here imports torch at import time.
"""
