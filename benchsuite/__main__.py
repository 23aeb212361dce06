"""``python -m benchsuite``: the same as the ``benchsuite`` command."""

from benchsuite.cli import main

main()
