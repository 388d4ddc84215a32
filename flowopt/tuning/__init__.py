"""Tuning: tuner nodes run the subgraph between searched params and an objective as trials.

`kinds` turns a `Strategy` class into a tuner node kind; `subgraph` works out, at compile
time, what each tuner owns; `trials` is the ask → run → tell loop the scheduler hands a
tuner node to; `records` holds the frozen trial records and the recorder protocol. This
package is part of the engine: it never imports the node library or the store. Its
submodules are imported lazily (the compiler and the scheduler only need them when a
pipeline has a tuner).
"""
