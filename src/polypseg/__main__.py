"""``python -m polypseg``: the command line."""

from polypseg.cli import main

main()
