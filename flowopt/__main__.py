"""``python -m flowopt`` is the ``flowopt`` command."""
from flowopt.cli.app import main

main()
