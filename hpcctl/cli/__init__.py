"""The `hpcctl` command line: one module per command group, each with a ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys

from hpcctl import __version__
from hpcctl.errors import HpcctlError

COMMAND_MODULES = (
    "hpcctl.cli.sandbox_cmd",
    "hpcctl.cli.site_cmd",
    "hpcctl.cli.image_cmd",
    "hpcctl.cli.job_cmd",
    "hpcctl.cli.run_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcctl",
        description="Run container images in Slurm jobs with the host's GPUs and MPI; "
                    "write jobs as short YAML specs.",
        epilog="Run `hpcctl COMMAND --help` for the options of a command.")
    parser.add_argument("--version", action="version", version=f"hpcctl {__version__}")
    parser.add_argument("--site", metavar="NAME|FILE",
                        help="site config to use (default: $HPCCTL_SITE, then /etc/hpcctl/site.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # names and paths from Slurm or images print as the bytes they are
        sys.stdout.reconfigure(errors="surrogateescape")
    try:
        return args.func(args) or 0
    except HpcctlError as exc:
        print(f"hpcctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpcctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hpcctl image ls | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
