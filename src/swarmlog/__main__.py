"""``python -m swarmlog``: the CLI."""

from swarmlog.cli import main

main()
