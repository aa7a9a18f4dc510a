"""Offline default calibration sets: the right synthetic kind for a model, built once into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qigbench.cache import atomic_build, cache_root
from qigbench.data.synthetic import write_caption_set, write_text_set
from qigbench.models.aliases import alias_for
from qigbench.models.registry import family_for, family_named

#: passages per requested text sample: the synthetic passages are ~40-80 words, so this yields
#: ``n`` chunks of 512 tokens even with a coarse tiny BPE tokenizer
PASSAGES_PER_SAMPLE = 40


def is_multimodal(model: Any) -> bool:
    """Whether a LoadedModel, ModelFamily, alias, family name or model folder is a vision-language model."""
    family = getattr(model, "family", model)
    if hasattr(family, "multimodal"):
        return bool(family.multimodal)
    name = str(model)
    alias = alias_for(name)
    if alias is not None:
        return family_named(alias.family).multimodal
    if Path(name).expanduser().is_dir():
        from transformers import AutoConfig

        return family_for(AutoConfig.from_pretrained(Path(name).expanduser())).multimodal
    return family_named(name).multimodal


def default_calibration(
    model: Any, cache_dir: str | Path | None = None, *, n: int = 128, seed: int = 0, image_size: int = 64
) -> Path:
    """Path of a synthetic calibration file for ``model``, built into ``<cache>/calibration`` if missing.

    Vision-language models get a caption set (``caption.json`` + PNG images), language models a
    text set (``text.jsonl``). ``n`` defaults to the paper's 128 calibration samples.
    """
    root = cache_root(cache_dir) / "calibration"
    if is_multimodal(model):
        target = root / f"synthetic-caption-n{n}-seed{seed}-{image_size}px"
        atomic_build(target, lambda tmp: write_caption_set(tmp, n, seed, "caption", image_size))
        return target / "caption.json"
    target = root / f"synthetic-text-n{n}-seed{seed}"
    atomic_build(target, lambda tmp: write_text_set(tmp, n * PASSAGES_PER_SAMPLE, seed))
    return target / "text.jsonl"
