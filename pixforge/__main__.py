"""``python -m pixforge``."""

from pixforge.cli import main

main()
