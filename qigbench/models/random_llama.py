"""Random LLaMA models of a chosen size, for benchmarks and cross-checks.

Calibration cost and solver agreement are properties of shapes, not of trained weights, so a
seeded ``LlamaForCausalLM`` of realistic width (e.g. 512-1024 hidden, group size 128 divides it)
is what the timing and cross-check suites use. It is saved with ``save_pretrained`` (tokenizer from
``tiny-llama``) and therefore loads through the same ``from_pretrained`` path as every model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from qigbench.cache import atomic_build, cache_root
from qigbench.models.tiny.common import MARKER, seeded_init, stamped


@dataclass(frozen=True)
class RandomLlamaSpec:
    hidden_size: int = 512
    intermediate_size: int = 1376
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    max_position_embeddings: int = 2048

    @property
    def name(self) -> str:
        return (
            f"random-llama-h{self.hidden_size}-i{self.intermediate_size}-l{self.num_hidden_layers}"
            f"-a{self.num_attention_heads}-kv{self.num_key_value_heads}"
        )


def ensure_random_llama(spec: RandomLlamaSpec = RandomLlamaSpec(), cache_dir: Path | str | None = None) -> Path:
    """Build (once) and return the directory of a seeded random LLaMA of ``spec``'s shape."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from qigbench.models.tiny import ensure_tiny

    root = cache_root(cache_dir)
    tokenizer_dir = ensure_tiny("tiny-llama", root)

    def build(out: Path) -> None:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        config = LlamaConfig(
            **asdict(spec),
            vocab_size=len(tok),
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=False,
        )
        seeded_init(lambda: LlamaForCausalLM(config)).save_pretrained(out)
        tok.save_pretrained(out)

    return atomic_build(root / "random" / spec.name, stamped(build, alias=spec.name), marker=MARKER)
