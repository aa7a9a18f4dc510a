"""smollm2-llava: assembled from the packaged SmolLM2 and the committed tower + projector, loaded
through ``from_pretrained``, answering a held-out pack question, and quantizable by the engine.

Slow: the first use converts SmolLM2's GGUF (about a minute) and assembles the model (seconds).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from qigbench.models import classify_tokens, get_blocks, load_model, resolve_groups
from qigbench.models.smollm2_llava import (
    MARKER,
    TRAINED_PREFIXES,
    VISION,
    ensure_smollm2_llava,
    training_record,
    weights_path,
)
from qigbench.tokens import TokenType

pytestmark = [pytest.mark.slow, pytest.mark.smollm2]


@pytest.fixture(scope="module")
def loaded(cache_dir: Path):  # type: ignore[no-untyped-def]
    return load_model("smollm2-llava", cache_dir=cache_dir)


def test_the_committed_weights_are_small_and_only_what_training_changed() -> None:
    from safetensors import safe_open

    path = weights_path()
    assert path.stat().st_size < 8 * 2**20
    with safe_open(str(path), "pt") as f:
        names = list(f.keys())
        assert all(n.startswith(TRAINED_PREFIXES) for n in names)
        assert {f.get_tensor(n).dtype for n in names} == {torch.float16}
    record = training_record()
    assert record["seed"] == 0 and record["steps"]["stage1"] > 0 and record["train_minutes_wall"] > 0


def test_assembled_model_is_llava_with_smollm2s_decoder_bit_for_bit(loaded, cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    from qigbench.models.smollm2 import ensure_smollm2

    model = loaded.model
    assert type(model).__name__ == "LlavaForConditionalGeneration" and loaded.family.name == "llava"
    folder = ensure_smollm2_llava(cache_dir)
    assert json.loads((folder / MARKER).read_text())["alias"] == "smollm2-llava"
    smollm2 = load_file(str(ensure_smollm2(cache_dir) / "model.safetensors"))
    ours = model.state_dict()
    for name, tensor in smollm2.items():
        if name.startswith("model.") and "embed_tokens" not in name:
            assert torch.equal(ours["model.language_model." + name.removeprefix("model.")], tensor), name
    embed = ours["model.language_model.embed_tokens.weight"]
    assert torch.equal(embed[: smollm2["model.embed_tokens.weight"].shape[0]], smollm2["model.embed_tokens.weight"])
    assert model.lm_head.weight.data_ptr() == embed.data_ptr()  # tied, as in SmolLM2
    committed = load_file(str(weights_path()))
    for name, tensor in committed.items():
        assert torch.equal(ours[name], tensor.float()), name


def test_processor_gives_sixteen_image_tokens_typed_as_vision(loaded) -> None:  # type: ignore[no-untyped-def]
    from qigbench.eval.tasks.render import make_colour

    sample = make_colour(random.Random(0))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sample.question}]}]
    prompt = loaded.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = loaded.processor(text=[prompt], images=[sample.image], return_tensors="pt")
    image_id = loaded.model.config.image_token_id
    assert int((batch["input_ids"] == image_id).sum()) == VISION.image_tokens == 16
    types = classify_tokens(
        batch["input_ids"], batch["attention_mask"], config=loaded.model.config, tokenizer=loaded.tokenizer,
        family=loaded.family,
    )
    assert int((types == TokenType.VISION).sum()) == 16


def test_it_answers_held_out_pack_questions(loaded) -> None:  # type: ignore[no-untyped-def]
    """Greedy answers to the first held-out items of the pack (seed 0): the tower sees."""
    from qigbench.eval.tasks.pack import LMMS_TASKS
    from qigbench.eval.tasks.render import RENDERERS

    right = 0
    for kind in ("colour", "shape"):
        offset = [k for k, _ in LMMS_TASKS.values()].index(kind)
        rng = random.Random(offset)  # the pack's stream for seed 0
        for _ in range(4):
            sample = RENDERERS[kind](rng)
            content = [{"type": "image"}, {"type": "text", "text": sample.question}]
            prompt = loaded.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
            batch = loaded.processor(text=[prompt], images=[sample.image], return_tensors="pt")
            with torch.no_grad():
                out = loaded.model.generate(**batch, max_new_tokens=4, do_sample=False)
            answer = loaded.tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            right += answer.strip().lower() == sample.answer
    assert right >= 6, f"{right}/8 right"


def test_the_engine_sees_thirty_llama_blocks_with_their_groups(loaded) -> None:  # type: ignore[no-untyped-def]
    blocks = get_blocks(loaded.model, loaded.family)
    assert len(blocks) == 30
    names = [g.name for g in resolve_groups(blocks[0], loaded.family) if g.scalable]
    assert names == ["qkv", "gate_up", "down"]  # 9 query heads over 3 key-value heads: no "o" group


def test_rtn_quantizes_it_end_to_end(cache_dir: Path, tmp_path: Path) -> None:
    from qigbench.pipeline import QuantizeRequest, quantize

    result = quantize(
        QuantizeRequest(model="smollm2-llava", method="rtn", format="W4A8", samples=2, cache_dir=str(cache_dir))
    )
    assert len(result.report.blocks) == 30
