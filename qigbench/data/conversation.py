"""Formatting image + prompt -> answer pairs with the target model's chat template and processor.

How the answer mask is made exact: the chat template renders the whole conversation; the
text before the answer (ending ``...<|im_start|>assistant\\n``) goes through the processor, which
expands image placeholders and builds pixel values. The answer and the template's end-of-turn
suffix are tokenized alone and appended to each row. So the answer mask covers exactly the
answer's own tokens, never a chat marker or an image token, whatever the tokenizer's merges —
the same per-turn tokenization LLaVA-style training uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from qigbench.data.batch import IGNORE_INDEX, CalibrationBatch, pad_rows
from qigbench.data.records import CalibrationDataError, ConversationRecord
from qigbench.models.token_types import classify_tokens

if TYPE_CHECKING:
    from qigbench.models.loading import LoadedModel

#: sequence-aligned processor outputs and the value appended for answer / suffix tokens
#: (mm_token_type_ids / token_type_ids: 0 means text in the HF processors' convention)
_APPENDED_VALUE = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 0}


@dataclass(frozen=True)
class _Rendered:
    prompt: str  # chat-templated text before the answer (contains the image placeholder)
    answer_ids: list[int]
    suffix_ids: list[int]


def _messages(record: ConversationRecord) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": record.prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": record.answer}]},
    ]


def render(record: ConversationRecord, processor: Any, tokenizer: Any) -> _Rendered:
    """Split the chat-templated conversation into prompt text, answer ids and suffix ids.

    The split point is where the template put the answer, so prompt + answer + suffix is exactly
    the template's rendering (also for templates whose assistant turn differs from their
    generation prompt, e.g. ``"ASSISTANT:"`` vs ``"ASSISTANT: "``).
    """
    full = processor.apply_chat_template(_messages(record), tokenize=False)
    at = full.rfind(record.answer)
    if at < 0:
        raise CalibrationDataError(
            f"sample {record.sample_id!r}: the chat template of {type(processor).__name__} does not contain the "
            "answer text verbatim (it rewrites assistant content), so the answer tokens cannot be located. Use a "
            "processor whose chat template renders assistant text as given."
        )
    suffix = full[at + len(record.answer) :]
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    return _Rendered(full[:at], encode(record.answer), encode(suffix) if suffix else [])


def conversation_batch(
    records: Sequence[ConversationRecord],
    *,
    loaded: LoadedModel,
    max_length: int | None = None,
    limit: int | None = None,
    truncated: list[str] | None = None,
) -> CalibrationBatch:
    """One :class:`CalibrationBatch` from image/prompt/answer records (images are opened here).

    ``max_length`` cuts answers; ``limit`` is the model's position limit (for the message when a
    prompt alone does not fit); the ids of samples whose answer was cut are appended to ``truncated``."""
    processor, tokenizer = loaded.processor, loaded.tokenizer
    if processor is None:
        raise CalibrationDataError(
            f"{loaded.source} has no multimodal processor, so image samples cannot be formatted for it. "
            "Use a text calibration set (kind='text') for language models."
        )
    rendered = [render(r, processor, tokenizer) for r in records]
    images = [r.load_image() for r in records]
    out = processor(text=[x.prompt for x in rendered], images=images, return_tensors="pt", padding=True)
    prompt_inputs = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
    mask = prompt_inputs["attention_mask"].bool()

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sequence_keys = ["input_ids", *[k for k in _APPENDED_VALUE if k in prompt_inputs]]
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in sequence_keys}
    answer_rows: list[torch.Tensor] = []
    for i, (record, parts) in enumerate(zip(records, rendered, strict=True)):
        n_prompt = int(mask[i].sum())
        answer_ids = _fit_answer(record, parts, n_prompt, max_length, limit)
        if truncated is not None and len(answer_ids) < len(parts.answer_ids):
            truncated.append(record.sample_id)
        tail = torch.tensor(answer_ids + parts.suffix_ids, dtype=torch.long)
        for key in sequence_keys:
            kept = prompt_inputs[key][i][mask[i]]
            added = tail if key == "input_ids" else torch.full_like(tail, _APPENDED_VALUE[key])
            rows[key].append(torch.cat([kept, added.to(kept.dtype)]))
        is_answer = torch.zeros(n_prompt + len(tail), dtype=torch.bool)
        is_answer[n_prompt : n_prompt + len(answer_ids)] = True
        answer_rows.append(is_answer)

    side = tokenizer.padding_side
    inputs = dict(prompt_inputs)
    for key in sequence_keys:
        inputs[key] = pad_rows(rows[key], pad_id if key == "input_ids" else 0, side)
    answer_mask = pad_rows(answer_rows, 0, side)
    token_types = classify_tokens(
        inputs["input_ids"],
        inputs["attention_mask"],
        config=loaded.model.config,
        tokenizer=tokenizer,
        family=loaded.family,
        mm_token_type_ids=inputs.get("mm_token_type_ids"),
    )
    labels = torch.where(answer_mask, inputs["input_ids"], torch.full_like(inputs["input_ids"], IGNORE_INDEX))
    return CalibrationBatch(inputs, token_types, answer_mask, labels, tuple(r.sample_id for r in records))


def _fit_answer(
    record: ConversationRecord, parts: _Rendered, n_prompt: int, max_length: int | None, limit: int | None = None
) -> list[int]:
    """Truncate the answer (never the prompt or its image tokens) so the row fits ``max_length``."""
    if max_length is None:
        return parts.answer_ids
    room = max_length - n_prompt - len(parts.suffix_ids)
    if room < 1:
        if max_length == limit:
            fix = "use smaller images or a shorter prompt: the model's positions end there (max_position_embeddings)"
        else:
            fix = f"raise --max-length (up to {limit}) or use smaller images" if limit else (
                "raise --max-length or use smaller images")
        raise CalibrationDataError(
            f"sample {record.sample_id!r}: the prompt with its image takes {n_prompt} tokens, which leaves no room "
            f"for the answer within max_length={max_length}; {fix}."
        )
    return parts.answer_ids[:room]
