"""qigbench: quantize vision-language models with QIG, AWQ, MBQ, GPTQ..., evaluate them and report the benchmark.

Each subcommand is a module in :mod:`qigbench.commands` exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; adding a command is adding a module.
User errors (:class:`QigbenchError`) print their message and exit 2, without a traceback.
Listing commands (``--help``) imports no command's dependencies: each module keeps torch,
transformers and matplotlib imports inside ``run``. Unless ``--verbose``, the libraries' progress
bars and logs are off (:mod:`qigbench.console`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from qigbench import commands
from qigbench.errors import QigbenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qigbench",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Start with `qigbench run` (offline, tiny model); `qigbench COMMAND --help` for each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.add_argument(
            "--verbose", action="store_true", help="also show the libraries' progress bars and log messages"
        )
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        from qigbench.console import quiet_libraries

        quiet_libraries()
    try:
        return int(args._run(args))
    except QigbenchError as err:
        print(f"qigbench {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
