"""The ``polypseg`` command line: a thin layer that parses arguments, calls library functions and prints."""

import importlib

from polypseg.cli.common import app

# Each module registers its commands on ``app``; ``polypseg --help`` lists them in this order.
for _module in ("train_cmds", "eval_cmds", "run_cmds", "serve_cmds", "data_cmds"):
    importlib.import_module(f"polypseg.cli.{_module}")


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
