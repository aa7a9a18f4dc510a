"""``qigbench models``: every model alias with its family and where its weights come from."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list model aliases with their family and source (a local folder works wherever an alias does)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", default=None, help="where tiny/package models are built ($QIGBENCH_CACHE, ~/.cache/qigbench)"
    )


def run(args: argparse.Namespace) -> int:
    from qigbench.cache import cache_root
    from qigbench.models.aliases import ALIASES, SourceKind

    cache = args.cache_dir or str(cache_root())
    rows = [("alias", "family", "source", "notes")]
    for alias in ALIASES:
        source = f"{alias.kind.value}:{alias.source}"
        if alias.kind is SourceKind.TINY:
            source = f"tiny: built offline into {cache}/tiny"
        elif alias.kind is SourceKind.SHAPE:
            source = f"shape of {alias.source}, built offline into {cache}/shapes"
        elif alias.kind is SourceKind.PACKAGE:
            source = f"package:{alias.source}"
        elif alias.kind is SourceKind.TRAINED:
            source = f"trained: {alias.source}, assembled into {cache}"
        notes = [alias.note] if alias.note else []
        if alias.trust_remote_code:
            notes.append("needs --trust-remote-code")
        rows.append((alias.name, alias.family, source, "; ".join(notes)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    print("Any local folder with a Hugging Face checkpoint (config.json) also works in place of an alias.")
    return 0
