"""lmms-eval model class for a transformers VLM that may be quantized in memory.

Two ways in:

* in-process: ``QigbenchVLM(model=m, processor=p)`` then
  ``lmms_eval.evaluator.simple_evaluate(model=instance, ...)`` — a model quantized in memory is
  evaluated as is, without a save/reload;
* lmms-eval's CLI: ``--model qigbench --model_args pretrained=DIR_OR_ALIAS,dtype=float32``, found
  through the ``lmms_eval.models`` entry point (see :mod:`qigbench.eval.lmms_plugin`).

Prompts go through the processor's chat template (the family's own), images through the real
processor; generation is batched with left padding, loglikelihood with right padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms

from qigbench.eval.errors import EvalError

#: generation kwargs of lmms-eval tasks that are not ``model.generate`` arguments
_NOT_GENERATE_KWARGS = ("until", "image_aspect_ratio", "num_beams_per_group", "temperature", "do_sample", "top_p")


@dataclass
class Request:
    """One harness request with its images resolved (what a subclass such as a test oracle sees)."""

    context: str
    visuals: list[Any]
    doc: dict[str, Any] | None
    task: str | None
    continuation: str = ""  # loglikelihood only
    gen_kwargs: dict[str, Any] = field(default_factory=dict)  # generation only


def harness_loglikelihood_output(nll: float, is_greedy: bool) -> GenerationResult:
    """Package one loglikelihood answer so lmms-eval 0.7.3 keeps it a ``(float, bool)`` pair.

    LMMS-EVAL 0.7.3 WORKAROUND (the one place): ``evaluator.evaluate`` passes every model output
    through ``api.instance.unwrap_generation_output``, which only passes ``str``,
    ``GenerationResult`` and ``(str, meta)`` through and turns anything else, including the
    ``(logprob, is_greedy)`` tuples ``loglikelihood`` must return, into ``str(output)``; every
    multiple-choice task then crashes in ``process_results`` (``zip(*results)`` over strings).
    ``GenerationResult.text`` is returned unchanged, so wrapping the pair keeps it intact.
    Remove this when lmms-eval fixes ``unwrap_generation_output``.
    """
    return GenerationResult(text=(float(nll), bool(is_greedy)))  # type: ignore[arg-type]


def _cut_at_stops(text: str, until: Sequence[str]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text.split(stop, 1)[0]
    return text


class QigbenchVLM(lmms):
    """A transformers image-text-to-text model behind lmms-eval's ``lmms`` API."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        model: torch.nn.Module | None = None,
        processor: Any = None,
        batch_size: int | str | None = 1,
        device: str | None = None,
        dtype: str = "float32",
        max_new_tokens: int = 32,
        trust_remote_code: bool | str = False,
        **unused: Any,
    ) -> None:
        super().__init__()
        if model is None:
            if pretrained is None:
                raise EvalError(
                    "QigbenchVLM needs pretrained=DIR_OR_ALIAS (CLI) or model=..., processor=... (in-process)"
                )
            from qigbench.models.loading import load_model

            loaded = load_model(
                pretrained,
                dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype,
                device=device or "cpu",
                trust_remote_code=str(trust_remote_code).lower() == "true",
            )
            model, processor = loaded.model, loaded.processor
        if processor is None or not callable(processor):
            raise EvalError("QigbenchVLM needs the model's processor (AutoProcessor) to build prompts and images")
        self.model: Any = model.eval()  # a transformers model (generate, forward with pixel inputs)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.batch_size = 1 if batch_size in (None, "auto") else max(1, int(batch_size))
        self.max_new_tokens = int(max_new_tokens)
        self._device = torch.device(device) if device else next(model.parameters()).device

    # ------------------------------------------------------------------ prompts and inputs
    def build_prompt(self, context: str, n_images: int) -> str:
        """The family's chat template around ``context`` with ``n_images`` image slots."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": context})
        messages = [{"role": "user", "content": content}]
        if not getattr(self.processor, "chat_template", None):
            raise EvalError("the processor has no chat_template; load the model with its processor (AutoProcessor)")
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, texts: list[str], visuals: list[list[Any]], padding_side: str) -> dict[str, torch.Tensor]:
        images = [img for group in visuals for img in group]
        old_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = padding_side
        try:
            kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
            if images:
                kwargs["images"] = images
            batch = self.processor(**kwargs)
        finally:
            self.tokenizer.padding_side = old_side
        return {k: v.to(self._device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _resolve(self, instance: Instance, loglikelihood: bool) -> Request:
        args = instance.args
        if loglikelihood and len(args) == 2:  # unconditional request (acc_mutual_info): no image, no doc
            return Request(context=args[0], continuation=args[1], visuals=[], doc=None, task=None)
        if loglikelihood:
            context, continuation, doc_to_visual, doc_id, task, split = args
            gen_kwargs: dict[str, Any] = {}
        else:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = args[:6]
            continuation = ""
        doc = self.task_dict[task][split][doc_id]
        visuals = doc_to_visual(doc) if callable(doc_to_visual) else []
        visuals = [v for v in (visuals or []) if v is not None]
        return Request(context, visuals, doc, task, continuation, dict(gen_kwargs or {}))

    # ------------------------------------------------------------------ the harness API
    def generate_until(self, requests: list[Instance]) -> list[str]:
        resolved = [self._resolve(r, loglikelihood=False) for r in requests]
        return self._batched(resolved, self.generate)

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        resolved = [self._resolve(r, loglikelihood=True) for r in requests]
        pairs = self._batched(resolved, self.choice_nll)
        return [harness_loglikelihood_output(nll, greedy) for nll, greedy in pairs]

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise EvalError("multi-round generation is not supported by the qigbench model; pick a single-round task")

    def clean(self) -> None:
        """Keep the model: lmms-eval 0.7.3's ``lmms.clean`` deletes every ``nn.Module`` attribute
        after an evaluation, which would destroy a caller's in-memory (quantized) model between runs."""

    def _batched(self, items: list[Request], fn: Callable[[list[Request]], list[Any]]) -> list[Any]:
        # sort by prompt length so a batch pads little; put the answers back in request order
        order = sorted(range(len(items)), key=lambda i: -len(items[i].context + items[i].continuation))
        out: list[Any] = [None] * len(items)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, value in zip(idx, fn([items[i] for i in idx]), strict=True):
                out[i] = value
        return out

    # ------------------------------------------------------------------ model calls (override in tests)
    @torch.no_grad()
    def generate(self, batch: list[Request]) -> list[str]:
        """Greedy (or sampled, if the task asks) continuations of one batch, cut at the task's stops."""
        kwargs = batch[0].gen_kwargs
        prompts = [self.build_prompt(r.context, len(r.visuals)) for r in batch]
        inputs = self.encode(prompts, [r.visuals for r in batch], padding_side="left")
        temperature = float(kwargs.get("temperature", 0) or 0)
        gen = {k: v for k, v in kwargs.items() if k not in _NOT_GENERATE_KWARGS}
        gen["max_new_tokens"] = int(gen.get("max_new_tokens", self.max_new_tokens))
        gen |= {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        output = self.model.generate(**inputs, **gen, pad_token_id=pad_id)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        until = kwargs.get("until") or []
        return [_cut_at_stops(t, [until] if isinstance(until, str) else until) for t in texts]

    @torch.no_grad()
    def choice_nll(self, batch: list[Request]) -> list[tuple[float, bool]]:
        """``(-log p(continuation | prompt, images), continuation is the greedy output)`` per request.

        lmms-eval's multiple-choice scoring takes the *argmin* of the first value, so this is a
        negative log-likelihood, not the log-likelihood lm-eval's convention would return.
        """
        prompts = [self.build_prompt(r.context, len(r.visuals)) for r in batch]
        visuals = [r.visuals for r in batch]
        context = self.encode(prompts, visuals, padding_side="right")
        full = self.encode([p + r.continuation for p, r in zip(prompts, batch, strict=True)], visuals, "right")
        logits = self.model(**full).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        context_len = context["attention_mask"].sum(dim=1)
        full_len = full["attention_mask"].sum(dim=1)
        results = []
        for i in range(len(batch)):
            c, n = int(context_len[i]), int(full_len[i])
            if n <= c:
                raise EvalError(
                    f"continuation {batch[i].continuation!r} adds no tokens to the prompt; check the task's target"
                )
            target = full["input_ids"][i, c:n]
            step = logprobs[i, c - 1 : n - 1]
            nll = -step.gather(-1, target[:, None]).sum().item()
            results.append((nll, bool((step.argmax(-1) == target).all())))
        return results
