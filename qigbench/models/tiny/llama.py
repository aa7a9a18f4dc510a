"""tiny-llama: the real ``LlamaForCausalLM`` at toy size (text only; 4 key-value heads, so "o" exists)."""

from __future__ import annotations

from pathlib import Path

from qigbench.models.tiny.common import seeded_init, tiny_text_config, train_bpe_tokenizer

# LLaMA-2 chat format; <s> is emitted by the template so apply_chat_template output is self-contained
_TEMPLATE = (
    "{{ '<s>' }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "[INST] {{ message['content'] }} [/INST]{% else %} {{ message['content'] }}</s>{% endif %}{% endfor %}"
)


def llama_tokenizer():  # type: ignore[no-untyped-def]
    """The tiny BPE tokenizer with LLaMA-2's ``<s>``/``</s>`` tokens and chat format."""
    named = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    return train_bpe_tokenizer(("<unk>", "<s>", "</s>", "<pad>"), named_tokens=named, chat_template=_TEMPLATE)


def build_llama(out: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = llama_tokenizer()
    config = LlamaConfig(
        **tiny_text_config(
            vocab_size=len(tok),
            num_hidden_layers=3,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    model = seeded_init(lambda: LlamaForCausalLM(config))
    model.save_pretrained(out)
    tok.save_pretrained(out)
