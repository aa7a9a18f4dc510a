"""Classify every position of ``input_ids`` as padding, text, vision or special.

Vision ids come from the model config (the family names the keys) and, where the processor
provides them, ``mm_token_type_ids``. Special ids come from the tokenizer's *added* tokens that
are flagged special: ``all_special_ids`` only lists the named ones (bos/eos/pad...) and misses
chat-template markers such as ``<|im_start|>``.
"""

from __future__ import annotations

from typing import Any

import torch

from qigbench.models.family import ModelFamily
from qigbench.tokens import TokenType


def vision_token_ids(config: Any, tokenizer: Any, family: ModelFamily) -> set[int]:
    """Image/video placeholder ids: config keys named by the family (dotted for a sub-config), plus
    named tokenizer strings."""
    ids: set[int] = set()
    for key in family.vision_token_config_keys:
        value = config
        for part in key.split("."):  # "vision_config.image_token_id": a sub-config's attribute
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if isinstance(value, int):
            ids.add(value)
    for text in family.vision_token_strings:
        token_id = tokenizer.convert_tokens_to_ids(text)
        if isinstance(token_id, int) and token_id != getattr(tokenizer, "unk_token_id", None):
            ids.add(token_id)
    return ids


def special_token_ids(tokenizer: Any) -> set[int]:
    """Every id the tokenizer treats as special, including chat-template markers."""
    ids = {int(i) for i in tokenizer.all_special_ids}
    ids.update(int(i) for i, tok in tokenizer.added_tokens_decoder.items() if getattr(tok, "special", False))
    return ids


def classify_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    config: Any,
    tokenizer: Any,
    family: ModelFamily,
    mm_token_type_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """``LongTensor[B, T]`` of :class:`TokenType`. Precedence: PAD > VISION > SPECIAL > TEXT.

    Vision wins over special because image placeholders are added special tokens too.
    """
    types = torch.full_like(input_ids, int(TokenType.TEXT), dtype=torch.long)
    specials = torch.tensor(sorted(special_token_ids(tokenizer)), dtype=input_ids.dtype, device=input_ids.device)
    types[torch.isin(input_ids, specials)] = int(TokenType.SPECIAL)
    vision = torch.tensor(sorted(vision_token_ids(config, tokenizer, family)), dtype=input_ids.dtype)
    is_vision = torch.isin(input_ids, vision.to(input_ids.device))
    if mm_token_type_ids is not None:
        is_vision |= mm_token_type_ids.to(input_ids.device) > 0
    types[is_vision] = int(TokenType.VISION)
    if attention_mask is not None:
        types[attention_mask.to(input_ids.device) == 0] = int(TokenType.PAD)
    return types
