"""The torch optimizer classes behind the optimizer kinds (importing these imports torch).

They live in a subpackage, not beside the kinds, because a submodule named like a kind
(``optimizer/lion.py``) would replace the ``optimizer.lion`` factory attribute the moment
it is imported.
"""
