"""``python -m controller.cli``: the same as ``canaryctl``."""

from controller.cli import main

main()
