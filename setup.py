"""Computes the package list for the mapped layout (the package-dir mapping in pyproject.toml).

`nodes/` and `store/` live at the repository root but install as `flowopt.nodes` and
`flowopt.store`; an explicit list would silently drop new sub-folders from the wheel.
"""
from setuptools import find_packages, setup

packages = ["flowopt", *("flowopt." + p for p in find_packages("flowopt"))]
for folder in ("nodes", "store"):
    packages += [f"flowopt.{folder}"] + [f"flowopt.{folder}.{p}" for p in find_packages(folder)]

setup(packages=packages)
