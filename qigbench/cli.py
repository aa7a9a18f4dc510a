"""qigbench: quantize vision-language models with QIG, AWQ, MBQ, GPTQ..., evaluate them and report the benchmark.

Each subcommand is a module in :mod:`qigbench.commands` exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; adding a command is adding a module.
User errors (:class:`QigbenchError`) print their message and exit 2, without a traceback.
Listing commands (``--help``) imports no command's dependencies: each module keeps torch,
transformers and matplotlib imports inside ``run``. Unless ``--verbose``, the libraries' progress
bars and logs are off (:mod:`qigbench.console`).

Under ``torchrun --nproc-per-node N -m qigbench COMMAND`` (data-parallel calibration, see
:mod:`qigbench.parallel`) the command runs on rank 0, which writes every output; the other ranks
join each calibration it starts and exit when it is done. Only commands that calibrate through
the pipeline (``quantize``, ``run``) can run so.
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


#: the commands that can run under torchrun (they calibrate through qigbench.pipeline.quantize)
DATA_PARALLEL_COMMANDS = ("quantize", "run")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        from qigbench.console import quiet_libraries

        quiet_libraries()
    try:
        if _launched_by_torchrun():
            return _main_ranked(args)
        return int(args._run(args))
    except QigbenchError as err:
        print(f"qigbench {args.command}: error: {err}", file=sys.stderr)
        return 2


def _device(args: argparse.Namespace) -> str:
    device = getattr(args, "device", None)
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _launched_by_torchrun() -> bool:
    import os

    return os.environ.get("WORLD_SIZE", "1") not in ("", "1")


def _main_ranked(args: argparse.Namespace) -> int:
    """Rank 0 runs the command and leads; the others follow its calibrations (see the module docstring)."""
    from qigbench import parallel

    if args.command not in DATA_PARALLEL_COMMANDS:
        raise QigbenchError(
            f"qigbench {args.command} does not run under torchrun; only {', '.join(DATA_PARALLEL_COMMANDS)} "
            "calibrate data-parallel (run it as a plain command)"
        )
    if args.command == "run" and (getattr(args, "workers", None) or getattr(args, "executor", "local") != "local"):
        raise QigbenchError("qigbench run under torchrun calibrates each configuration on every rank; it cannot "
                            "also hand jobs to --workers / --executor (use --gpus-per-job N for N GPUs per job)")
    world = parallel.init_from_env(_device(args))
    try:
        if not world.is_main:
            from qigbench.pipeline import quantize

            return parallel.follow({"quantize": quantize})
        parallel.lead()
        try:
            return int(args._run(args))
        finally:
            parallel.release()
    finally:
        parallel.shutdown()


if __name__ == "__main__":
    sys.exit(main())
