"""The ``segnet-domains`` command: one entry point, one module per command group.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds
its sub-commands with ``set_defaults(func=handler)``; a handler takes the
parsed arguments and returns an exit code. Handlers are thin: they call
library functions. Every :class:`~segnet_domains.errors.InputError` (and
other expected failures) becomes one line on stderr and exit code 2 — no
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from segnet_domains.errors import InputError

#: Command modules, in ``--help`` order.
COMMAND_MODULES = (
    "segnet_domains.cli.info",
    "segnet_domains.cli.predict",
    "segnet_domains.cli.predict_split",
    "segnet_domains.cli.train",
    "segnet_domains.cli.tile",
    "segnet_domains.cli.evaluate",
    "segnet_domains.cli.bundle",
    "segnet_domains.cli.export_onnx",
    "segnet_domains.cli.demo",
    "segnet_domains.cli.serve",
)

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``error: …``, exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all registered sub-commands)."""
    parser = OneLineParser(
        prog="segnet-domains",
        description="SegNet segmentation for MRI volumes, fundus images and aerial/satellite scenes.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (and show tracebacks)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:  # a command group not built yet
            continue
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as ``sys.exit`` status by the console script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_pipeline(default_config: str | Path, argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pipelines/*.py`` scripts: ``train`` with their config unless one is given.

    Args:
        default_config: the script's YAML config, used when ``argv`` starts with an option (or is empty).
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code of ``segnet-domains train``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        args = [str(default_config), *args]
    return main(["train", *args])


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
