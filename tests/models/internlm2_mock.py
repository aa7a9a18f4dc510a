"""An InternLM2-shaped model (InternVL2's remote-code language model) built from plain modules.

Nothing is downloaded: the tree mirrors the remote code's module names and shapes
(``language_model.model.layers[i].attention.wqkv`` with q/k/v rows interleaved per key-value
group, ``wo``, ``feed_forward.w1/w3/w2``, ``attention_norm``/``ffn_norm``) and its block math, and
the root has a causal-LM forward, so the whole engine (capture, MBQ's gradient pass, every method)
runs on it without trust_remote_code.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from qigbench.tokens import TokenType

HIDDEN, HEADS, KV_HEADS, INTER, VOCAB = 32, 4, 2, 48, 16
HEAD_DIM = HIDDEN // HEADS


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Attention(nn.Module):
    def __init__(self, kv_heads: int = KV_HEADS) -> None:
        super().__init__()
        self.kv_heads = kv_heads
        self.wqkv = nn.Linear(HIDDEN, (HEADS + 2 * kv_heads) * HEAD_DIM, bias=False)
        self.wo = nn.Linear(HIDDEN, HIDDEN, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        per_kv = HEADS // self.kv_heads
        qkv = self.wqkv(x).view(b, t, self.kv_heads, per_kv + 2, HEAD_DIM)
        q = qkv[..., :per_kv, :].reshape(b, t, HEADS, HEAD_DIM).transpose(1, 2)
        k = qkv[..., -2, :].repeat_interleave(per_kv, dim=2).transpose(1, 2)
        v = qkv[..., -1, :].repeat_interleave(per_kv, dim=2).transpose(1, 2)
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(b, t, HIDDEN))


class FeedForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Linear(HIDDEN, INTER, bias=False)
        self.w3 = nn.Linear(HIDDEN, INTER, bias=False)
        self.w2 = nn.Linear(INTER, HIDDEN, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))


class DecoderLayer(nn.Module):
    def __init__(self, kv_heads: int = KV_HEADS) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(HIDDEN)
        self.attention = Attention(kv_heads)
        self.ffn_norm = RMSNorm(HIDDEN)
        self.feed_forward = FeedForward()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))


class InternVLChatMock(nn.Module):
    """Root of the tree: embeddings -> decoder layers -> norm -> output, with the caption loss."""

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, **_: object) -> SimpleNamespace:
        lm = self.language_model
        h = lm.model.tok_embeddings(input_ids)
        for layer in lm.model.layers:
            h = layer(h)
        logits = lm.output(lm.model.norm(h))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return SimpleNamespace(logits=logits, loss=loss)


@dataclass
class MockBatch:
    """A calibration batch in the engine's shape: half the tokens are "vision", the rest the answer."""

    inputs: dict[str, torch.Tensor]
    token_types: torch.Tensor
    answer_mask: torch.Tensor
    labels: torch.Tensor


def mock_batches(n_batches: int = 2, batch_size: int = 2, length: int = 8, seed: int = 0) -> list[MockBatch]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(0, VOCAB, (batch_size, length), generator=gen)
        types = torch.full((batch_size, length), int(TokenType.TEXT))
        types[:, : length // 2] = int(TokenType.VISION)
        answer = types == TokenType.TEXT
        labels = torch.where(answer, ids, torch.full_like(ids, -100))
        out.append(MockBatch({"input_ids": ids}, types, answer, labels))
    return out


def internvl_chat_tree(kv_heads: int = KV_HEADS) -> nn.Module:
    """The mock (GQA: 4 query / 2 key-value heads by default; ``kv_heads=HEADS`` for one value head per
    query head, where the "o" group is scaled through the strided v rows of ``wqkv``)."""
    torch.manual_seed(0)
    root = InternVLChatMock()
    llm = SimpleNamespace(model_type="internlm2", num_attention_heads=HEADS, num_key_value_heads=kv_heads)
    root.config = SimpleNamespace(model_type="internvl_chat", llm_config=llm)  # type: ignore[assignment]
    root.vision_model = nn.Linear(4, 4)
    root.mlp1 = nn.Linear(4, HIDDEN)
    root.language_model = nn.Module()
    root.language_model.model = nn.Module()
    root.language_model.model.tok_embeddings = nn.Embedding(VOCAB, HIDDEN)
    root.language_model.model.layers = nn.ModuleList([DecoderLayer(kv_heads) for _ in range(2)])
    root.language_model.model.norm = RMSNorm(HIDDEN)
    root.language_model.output = nn.Linear(HIDDEN, VOCAB, bias=False)
    return root
