"""Shared pieces of the offline tiny models: tokenizer training, chat template, the build stamp.

Tiny models exist so that every test and the CI report run the *real* transformers classes,
processors and ``from_pretrained`` path without a network. They are deterministic: weights come
from a fixed seed, the tokenizer from a fixed built-in corpus.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

SEED = 0
#: Bump when a builder changes, so cached tiny models are rebuilt rather than silently reused.
BUILD_VERSION = 4  # 4: no out-of-vocabulary bos_token_id in the Qwen2-VL text configs
MARKER = "qigbench_tiny.json"

CORPUS: tuple[str, ...] = (
    "Describe the image in detail.",
    "What is shown in this picture? Answer with a single word.",
    "A red square, a blue circle and a green triangle on a white background.",
    "The bar chart shows sales growing from 3 to 9 over four quarters.",
    "Read the text in the image: the sign says OPEN 24 HOURS.",
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps weights to a small grid of integers with a scale and a zero point.",
    "Question: how many objects are there? Answer: there are 7 objects.",
    "user assistant system: You are a helpful assistant.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000",
)


def train_bpe_tokenizer(
    special_tokens: Sequence[str],
    *,
    named_tokens: Mapping[str, str],
    vocab_size: int = 384,
    chat_template: str | None = None,
) -> Any:
    """A byte-level BPE tokenizer trained on :data:`CORPUS`, special tokens first (ids 0..n-1).

    ``named_tokens`` maps tokenizer attribute names (``eos_token``, ``pad_token``, and named extra
    specials such as ``image_token`` or InternVL's ``start_image_token``) to token strings; the
    processors look these attributes up by name.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    standard = {k: v for k, v in named_tokens.items() if k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    extra = {k: v for k, v in named_tokens.items() if k not in standard}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=extra, **standard)
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def chat_template(*, image: str, video: str, bos: str = "") -> str:
    """A ChatML template (Qwen / LLaVA-OV / InternVL style) emitting ``image`` per image item."""
    return (
        bos + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}"
        "{% if c['type'] == 'image' %}" + image + "{% elif c['type'] == 'video' %}" + video + ""
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def tiny_text_config(**overrides: Any) -> dict[str, Any]:
    """The language-model part every tiny VLM shares: 128 wide (so the paper's group size 128
    applies), 2 blocks, 8 heads of 16."""
    cfg: dict[str, Any] = dict(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        # the tiny tokenizers have no BOS token; left unset, Qwen2-VL's text config keeps the 7B
        # model's id 151643, outside the 384-token vocabulary (transformers warns on every load)
        bos_token_id=None,
    )
    cfg.update(overrides)
    return cfg


M = TypeVar("M", bound=torch.nn.Module)


def seeded_init(factory: Callable[[], M]) -> M:
    """Build a model under a fixed seed on CPU in float32 (same alias -> same weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = factory()
    model.float().eval()
    return model


def stamped(build: Callable[[Path], None], *, alias: str) -> Callable[[Path], None]:
    """``build`` followed by writing :data:`MARKER` (alias, build version, seed): pass the result to
    :func:`qigbench.cache.atomic_build` with ``marker=MARKER``, so a folder without it is never reused."""

    def build_and_stamp(out: Path) -> None:
        build(out)
        (out / MARKER).write_text(json.dumps({"alias": alias, "build_version": BUILD_VERSION, "seed": SEED}))

    return build_and_stamp
