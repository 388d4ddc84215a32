"""Tuner kinds: nodes that run the subgraph between searched params and an objective."""
