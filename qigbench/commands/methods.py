"""``qigbench methods``: list installed method plugins and their options."""

from __future__ import annotations

import argparse
import dataclasses

NAME = "methods"
HELP = "list the installed PTQ method plugins with their options and defaults"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _options(config_class: type, prefix: str = "") -> list[str]:
    out = []
    defaults = config_class()
    for f in dataclasses.fields(config_class):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(_options(type(value), prefix=f"{prefix}{f.name}."))
        else:
            out.append(f"{prefix}{f.name}={value!r}")
    return out


def run(args: argparse.Namespace) -> int:
    from qigbench.engine.method import available_methods

    for name, cls in available_methods().items():
        doc = (__import__(cls.__module__, fromlist=["_"]).__doc__ or "").strip()
        summary = " ".join(doc.split("\n\n")[0].split())  # the module docstring's first paragraph
        print(f"{name}: {summary}")
        for option in _options(cls.config_class):
            print(f"    {option}")
    return 0
