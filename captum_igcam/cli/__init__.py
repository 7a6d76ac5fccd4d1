"""Command line entry point: ``captum-igcam <subcommand> ...``.

Each subcommand lives in a module of its own, listed in
:data:`SUBCOMMAND_MODULES`, that exposes ``NAME``, ``HELP`` (one line),
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``. The
modules import torch and the models only inside ``run``, so ``--help``,
``--version`` and argument errors are quick.

Errors end a command with one line on stderr and exit status 1; an invalid
value of an option (a :class:`~captum_igcam.app.errors.SettingValueError`
whose setting has an option), found by argparse or later, is a usage error
with exit status 2. An output folder the failed command created is removed
again if it is empty.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from captum_igcam import __version__
from captum_igcam.app.errors import SettingValueError, UsageError
from captum_igcam.cli import _options

__all__ = ["UsageError", "build_parser", "main"]

SUBCOMMAND_MODULES = (
    "captum_igcam.cli.explain",
    "captum_igcam.cli.benchmark",
    "captum_igcam.cli.explain_dataset",
    "captum_igcam.cli.report",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-igcam`` parser, with every subcommand registered."""
    parser = _options.CommandParser(
        prog="captum-igcam",
        description="Integrated Grad-CAM explanations for image models: "
        "classifiers, segmentation models and detectors.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMAND_MODULES:
        command = importlib.import_module(module_name)
        subparser = subparsers.add_parser(
            command.NAME, help=command.HELP, description=command.DESCRIPTION
        )
        command.add_arguments(subparser)
        subparser.set_defaults(func=command.run, command_parser=subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``captum-igcam``; return the exit status (0 success, 1 error).

    An invalid option value found after parsing exits with status 2 through
    argparse's own usage error, as one found while parsing does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    status = 1
    try:
        status = int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("captum-igcam: interrupted", file=sys.stderr)
        status = 130
    except Exception as error:  # noqa: BLE001 - one-line message for the user
        if args.debug:
            raise
        option = _options.option_of(error)
        if isinstance(error, SettingValueError) and option is not None:
            args.command_parser.error(f"argument {option}: {error.reason}")
        _options.print_error(error)
    finally:
        _options.release_created_folders(failed=status != 0)
    return status
