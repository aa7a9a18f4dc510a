"""GPTQ: column-wise optimal-brain quantization with lazy batch updates, uniform token weights."""

from __future__ import annotations

from qigbench.bases.gptq_family import GPTQMethod, GPTQMethodConfig


class GPTQ(GPTQMethod[GPTQMethodConfig]):
    name = "gptq"
