"""Fidelity of a quantized model to its full-precision original, token by token.

Accuracy on a tiny model is noisy and often at chance; the next-token distribution is not. For
held-out prompts (text, or text plus images for a VLM) we run both models on the same inputs and
measure, at every non-padding position ``t``:

* ``KL(p_fp(. | x_<=t) || p_q(. | x_<=t))`` in nats — how much probability mass quantization moved;
* top-1 flip: ``argmax p_fp != argmax p_q`` — whether greedy decoding would change.

Both are averaged over non-padding positions of all prompts (each token counts once, so long
prompts weigh more, as in perplexity). The fp model is the reference: KL is 0 and flips are 0
exactly when the two models agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qigbench.eval.errors import EvalError


@dataclass(frozen=True)
class FidelityResult:
    """Token-averaged fidelity of a quantized model against the fp reference."""

    kl: float  # mean KL(p_fp || p_q) per token, nats
    flip_rate: float  # fraction of tokens whose top-1 prediction changed
    tokens: int  # non-padding positions averaged over
    kl_max: float  # worst single token (outliers matter for generation)
    #: per prompt, in input order: mean KL, flip rate and token count (the weights that give back kl/flip_rate)
    prompt_kl: tuple[float, ...] = ()
    prompt_flip_rate: tuple[float, ...] = ()
    prompt_tokens: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, float]:
        return {"kl": self.kl, "flip_rate": self.flip_rate, "tokens": float(self.tokens), "kl_max": self.kl_max}


def token_kl(logits_fp: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(logits_fp) || softmax(logits_q))`` over the last dim, in float32 (nats, >= 0)."""
    if logits_fp.shape != logits_q.shape:
        raise EvalError(f"logit shapes differ: fp {tuple(logits_fp.shape)} vs quantized {tuple(logits_q.shape)}")
    log_p = torch.log_softmax(logits_fp.float(), dim=-1)
    log_q = torch.log_softmax(logits_q.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).clamp_min(0.0)


def batch_fidelity(
    logits_fp: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor | None
) -> tuple[float, int, int, float]:
    """Sum of KL, number of flips, number of tokens and max KL over the positions where ``mask`` is 1."""
    kl = token_kl(logits_fp, logits_q)
    flips = logits_fp.argmax(-1) != logits_q.argmax(-1)
    keep = torch.ones_like(kl, dtype=torch.bool) if mask is None else mask.to(kl.device).bool()
    if keep.shape != kl.shape:
        raise EvalError(f"attention mask shape {tuple(keep.shape)} does not match logits {tuple(kl.shape)}")
    kept = kl[keep]
    kl_max = float(kept.max()) if kept.numel() else 0.0
    return float(kept.sum()), int(flips[keep].sum()), int(keep.sum()), kl_max


def prompt_fidelity(
    logits_fp: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor | None
) -> list[tuple[float, float, int]]:
    """Per prompt (batch row): mean KL, flip rate and number of non-padding tokens."""
    kl = token_kl(logits_fp, logits_q)
    flips = (logits_fp.argmax(-1) != logits_q.argmax(-1)).float()
    keep = torch.ones_like(kl) if mask is None else mask.to(kl.device).float()
    if keep.shape != kl.shape:
        raise EvalError(f"attention mask shape {tuple(keep.shape)} does not match logits {tuple(kl.shape)}")
    n = keep.sum(-1)
    out = []
    for k, f, c in zip((kl * keep).sum(-1).tolist(), (flips * keep).sum(-1).tolist(), n.tolist(), strict=True):
        if c > 0:
            out.append((k / c, f / c, int(c)))
    return out


@torch.no_grad()
def fidelity(
    model_fp: nn.Module,
    model_q: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    device: str | torch.device | None = None,
) -> FidelityResult:
    """KL and flip rate of ``model_q`` against ``model_fp`` over ``batches`` of model inputs.

    Each batch is what the model's forward takes (``input_ids``, ``attention_mask`` and, for a
    VLM, the processor's ``pixel_values`` / ``image_grid_thw`` ...): the output of a tokenizer or
    processor called with ``padding=True, return_tensors="pt"``. Positions where
    ``attention_mask`` is 0 are left out. Both models must share a vocabulary.
    """
    total_kl, flips, tokens, kl_max = 0.0, 0, 0, 0.0
    prompts: list[tuple[float, float, int]] = []
    for batch in batches:
        inputs = {
            k: (v.to(device) if device is not None and isinstance(v, torch.Tensor) else v) for k, v in batch.items()
        }
        logits_fp = model_fp(**inputs).logits
        logits_q = model_q(**inputs).logits
        s, f, n, m = batch_fidelity(logits_fp, logits_q, inputs.get("attention_mask"))
        total_kl, flips, tokens, kl_max = total_kl + s, flips + f, tokens + n, max(kl_max, m)
        prompts += prompt_fidelity(logits_fp, logits_q, inputs.get("attention_mask"))
    if tokens == 0:
        raise EvalError("no non-padding tokens to compare: pass at least one non-empty prompt")
    return FidelityResult(
        kl=total_kl / tokens,
        flip_rate=flips / tokens,
        tokens=tokens,
        kl_max=kl_max,
        prompt_kl=tuple(p[0] for p in prompts),
        prompt_flip_rate=tuple(p[1] for p in prompts),
        prompt_tokens=tuple(p[2] for p in prompts),
    )


def text_batches(tokenizer: Any, prompts: list[str], batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Tokenized, padded batches of held-out text prompts for :func:`fidelity`."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return [
        dict(tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True))
        for i in range(0, len(prompts), batch_size)
    ]


def vlm_batches(processor: Any, prompts: list[str], images: list[Any], batch_size: int = 4) -> list[dict[str, Any]]:
    """Processor batches of (chat-templated prompt, image) pairs for :func:`fidelity` on a VLM."""
    if len(prompts) != len(images):
        raise EvalError(f"{len(prompts)} prompts but {len(images)} images: pass one image per prompt")
    out = []
    for i in range(0, len(prompts), batch_size):
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for p in prompts[i : i + batch_size]
        ]
        out.append(dict(processor(text=texts, images=images[i : i + batch_size], return_tensors="pt", padding=True)))
    return out
