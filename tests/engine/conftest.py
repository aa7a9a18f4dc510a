"""A tiny Llama loaded through from_pretrained and a small calibration batch for engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from qigbench.data.batch import CalibrationBatch
from qigbench.models.registry import family_for
from qigbench.models.tiny import ensure_tiny
from qigbench.tokens import TokenType

TEXTS = [
    "the red square sits left of the blue circle",
    "three green triangles and one yellow star",
    "a bar chart with five bars rising",
    "digits 4 7 1 written in black",
]


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny("tiny-llama", tmp_path_factory.mktemp("cache"))


def load_llama(path: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def text_batches(path: Path, texts: list[str] = TEXTS, batch_size: int = 2) -> list[CalibrationBatch]:
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], return_tensors="pt", padding=True)
        mask = enc["attention_mask"].bool()
        types = torch.where(mask, int(TokenType.TEXT), int(TokenType.PAD))
        labels = torch.where(mask, enc["input_ids"], -100)
        out.append(CalibrationBatch(inputs=dict(enc), token_types=types, answer_mask=mask, labels=labels))
    return out


@pytest.fixture()
def llama(tiny_llama_dir: Path):  # type: ignore[no-untyped-def]
    model = load_llama(tiny_llama_dir)
    return model, family_for(model), text_batches(tiny_llama_dir)


@pytest.fixture(scope="session")
def tools():  # type: ignore[no-untyped-def]
    """Helpers as a fixture (test modules are not importable as a package)."""

    class Tools:
        load = staticmethod(load_llama)
        batches = staticmethod(text_batches)

    return Tools
