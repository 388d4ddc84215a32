"""``tuner.bayesopt``: Gaussian-process Bayesian optimisation (Frazier 2018, "A Tutorial on
Bayesian Optimization").

Modules: `gp` (Matérn-5/2 ARD GP, MAP hyperparameters), `kernels` (numba hot loops with
numpy references), `acquisition` (EI, noisy EI, knowledge gradient), `strategy` (the
`BayesOpt` ask/tell strategy). Only `strategy` is imported here, and it imports scipy and
numba lazily, so registering the kind keeps start-up light.
"""
from .strategy import BayesOpt, BayesOptConfig

__all__ = ["BayesOpt", "BayesOptConfig"]
