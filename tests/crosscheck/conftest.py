"""Fixtures of the llm-compressor cross-check (run it with ``tox -e crosscheck``).

The test modules skip themselves when llm-compressor is not importable (the main env has
torch 2.14.1 / transformers 5.23, beyond what llm-compressor 0.14 supports), so nothing here may
import it. Numbers measured by the tests are collected in ``RESULTS`` and printed at the end of
the run, so ``tox -e crosscheck`` shows them without ``-s``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import xc_harness as H

RESULTS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def results() -> dict[str, Any]:
    return RESULTS


@pytest.fixture(scope="session")
def xc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xc-cache")


@pytest.fixture(scope="session")
def model_dir(xc_cache: Path) -> Path:
    return H.build_model_dir(xc_cache)


@pytest.fixture(scope="session")
def tokens(model_dir: Path, xc_cache: Path) -> H.TokenSets:
    return H.token_sets(model_dir, xc_cache / "text")


@pytest.fixture(scope="session")
def fp_logits(model_dir: Path, tokens: H.TokenSets) -> torch.Tensor:
    return H.logits(H.load_fp(model_dir), tokens.held_out)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("crosscheck numbers (qigbench vs llm-compressor)")
    for key, value in RESULTS.items():
        terminalreporter.write_line(f"{key}: {value}")
