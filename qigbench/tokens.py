"""Token types: the one vocabulary every layer uses to tell positions apart.

Values are stable (they are stored in calibration caches and results), so never renumber.
"""

from __future__ import annotations

from enum import IntEnum

import torch


class TokenType(IntEnum):
    PAD = 0  # excluded from every statistic, loss and weight
    TEXT = 1  # prompt and answer text
    VISION = 2  # image / video placeholder positions (their hidden states come from the vision tower)
    SPECIAL = 3  # bos/eos, image start/end markers, chat-template markers


def valid_mask(token_types: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the positions that count (everything but padding)."""
    return token_types != TokenType.PAD


def uniform_token_weights(token_types: torch.Tensor) -> torch.Tensor:
    """lambda[B, T]: 1 / (number of non-padding tokens) on each row, 0 on padding.

    This is the definition of "unweighted" used by every solver: passing these weights
    explicitly and passing ``None`` must give bit-identical results.
    """
    mask = valid_mask(token_types).to(torch.float32)
    return mask / mask.sum(dim=-1, keepdim=True).clamp_min(1.0)
