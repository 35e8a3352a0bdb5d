"""``python -m stream.cli``: the ``soiree`` command without its console script."""

from stream.cli.commands import main

main()
