"""Train smollm2-llava's vision tower and projector (LLaVA's recipe, the SmolLM2 decoder frozen).

Two stages, both on the training pool of :mod:`qigbench.training.items` (never the held-out pack):

0. **tower pretraining** - LLaVA starts from a pretrained CLIP tower; none can be downloaded here,
   so the SigLIP tower is pretrained on the pool first, as a classifier per kind (colour, shape,
   count, tallest bar, quadrant): one head on the flattened patch features and one that every
   patch feature must satisfy alone (:class:`Heads`). Cheap: the decoder is not involved. The
   heads are thrown away.
1. **visual instruction tuning** - the whole model, decoder frozen: the projector and the tower are
   trained so that SmolLM2 answers the pack's questions (the task's own prompt after the image,
   through the processor's chat template; loss on the answer tokens and ``<|im_end|>`` only).
   Gradients flow through the 30 frozen decoder blocks to the image features.

Everything is seeded, batches are a function of (seed, stage, step), and a checkpoint is written
every few steps, so an interrupted run resumes where it stopped and ends with the same weights.
The output is the committed file (tower + projector in float16) and a JSON record: seeds, steps,
time per stage (wall and process CPU), losses, and the held-out accuracy through lmms-eval.

    python -m qigbench.training.smollm2_llava train --out runs/smollm2-llava    # ~25 min on one core
    python -m qigbench.training.smollm2_llava evaluate --out runs/smollm2-llava --limit 50
    python -m qigbench.training.smollm2_llava install --out runs/smollm2-llava  # into the package
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qigbench.models.smollm2_llava import (
    ALIAS,
    RECORD_FILE,
    VISION,
    WEIGHTS_FILE,
    build_model,
    build_processor,
    load_trained,
    trained_state,
    weights_path,
)
from qigbench.training.items import TASK_OF_KIND, TRAIN_KINDS, TrainItem, classes, training_pool, validation_items

CHECKPOINT = "checkpoint.pt"
END = "<|im_end|>"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    pool: int = 5000  # training items (1,000 per kind)
    stage0_steps: int = 1000
    stage0_batch: int = 64
    stage0_lr: float = 1e-3
    stage1_steps: int = 400
    stage1_batch: int = 8
    projector_lr: float = 1e-3
    tower_lr: float = 2e-4
    warmup: int = 20
    weight_decay: float = 0.01
    threads: int = 1  # one thread: two spin-wait for each other on a shared machine (4x slower measured)
    checkpoint_every: int = 10
    validate_every: int = 50
    validation_size: int = 100
    kinds: tuple[str, ...] = TRAIN_KINDS
    #: stage 0 also trains a head on every patch feature alone (recipe "v2", which made the committed
    #: weights; recipe "v1", the first weights, had False and 250 stage-1 steps)
    token_heads: bool = True


#: the named recipes (``--recipe``): v2 made the committed weights (93.8% held-out), v1 the first ones (69%)
RECIPES: dict[str, dict[str, Any]] = {
    "v1": {"token_heads": False, "stage1_steps": 250},
    "v2": {"token_heads": True, "stage1_steps": 400},
}


def recipe_name(config: TrainConfig) -> str:
    """The name of the recipe ``config`` follows (``RECIPES``), or "custom"."""
    fields = asdict(config)
    return next((n for n, r in RECIPES.items() if all(fields[k] == v for k, v in r.items())), "custom")


@dataclass
class Progress:
    """Everything a checkpoint holds besides tensors (JSON-able)."""

    stage: int = 0
    step: int = 0  # steps finished in ``stage``
    seconds: dict[str, float] = field(default_factory=dict)  # "stage0_wall", "stage0_cpu", ...
    losses: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    resumed: int = 0


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batch_indices(config: TrainConfig, stage: int, step: int, size: int) -> list[int]:
    """The pool items of one step: a function of (seed, stage, step) only, so resuming is exact."""
    rng = np.random.default_rng([config.seed, stage, step])
    return [int(i) for i in rng.choice(config.pool, size=size, replace=False)]


class Heads(nn.Module):
    """Stage 0's classifiers (discarded afterwards), per kind:

    * on the patch features flattened (a quadrant or the tallest bar is a question of *where*:
      mean pooling would hide it), which the tower learns quickly (recipe v1: only this);
    * with ``token_heads`` (recipe v2), also on *every* patch feature alone, the loss averaged over
      patches: each image token must carry the answer by itself. Motivation (v1, 250 stage-1 steps):
      the decoder stays weakest on the chart and diagram questions (0.55 each on the pack), whose
      answer is spread over several patches. v2 (400 stage-1 steps) lifts them to 0.78 and 1.0.
    """

    def __init__(self, hidden: int, tokens: int, kinds: tuple[str, ...], token_heads: bool = False) -> None:
        super().__init__()
        self.kinds = kinds
        self.norm = nn.LayerNorm(hidden)
        self.heads = nn.ModuleDict({k: nn.Linear(hidden * tokens, len(classes(k))) for k in kinds})
        self.token_heads = (
            nn.ModuleDict({k: nn.Linear(hidden, len(classes(k))) for k in kinds}) if token_heads else None
        )

    def logits(self, features: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(flattened logits [B, C], per-token logits [B, T, C] or None) of ``kind``'s classifier."""
        normed = self.norm(features)
        per_token = None if self.token_heads is None else self.token_heads[kind](normed)
        return self.heads[kind](normed.flatten(1)), per_token

    def predict(self, features: torch.Tensor, kind: str) -> torch.Tensor:
        """Class indices [B]: the per-token heads' mean where there are some, else the flattened head."""
        flat, per_token = self.logits(features, kind)
        return (flat if per_token is None else per_token.mean(dim=1)).argmax(-1)

    def forward(self, features: torch.Tensor, items: list[TrainItem]) -> tuple[torch.Tensor, float]:
        if self.token_heads is None:
            return self._flat_loss(features, items)
        losses, right = [], 0
        for kind in dict.fromkeys(it.kind for it in items):
            idx = [i for i, it in enumerate(items) if it.kind == kind]
            target = torch.tensor([items[i].label for i in idx])
            flat, per_token = self.logits(features[idx], kind)
            assert per_token is not None
            tokens = per_token.shape[1]
            losses.append(nn.functional.cross_entropy(flat, target, reduction="sum"))
            losses.append(
                nn.functional.cross_entropy(per_token.flatten(0, 1), target.repeat_interleave(tokens), reduction="sum")
                / tokens
            )
            right += int((per_token.mean(dim=1).argmax(-1) == target).sum())
        return torch.stack(losses).sum() / len(items), right / len(items)

    def _flat_loss(self, features: torch.Tensor, items: list[TrainItem]) -> tuple[torch.Tensor, float]:
        """Recipe v1's loss, item by item (kept as it ran: it made the committed weights)."""
        pooled = self.norm(features).flatten(1)
        losses, right = [], 0
        for i, item in enumerate(items):
            logits = self.heads[item.kind](pooled[i])
            target = torch.tensor(item.label)
            losses.append(nn.functional.cross_entropy(logits[None], target[None]))
            right += int(logits.argmax().item() == item.label)
        return torch.stack(losses).mean(), right / len(items)


def tower_features(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """The features LLaVA hands the projector (``vision_feature_layer=-1``, strategy ``full``)."""
    out = model.model.vision_tower(pixel_values, output_hidden_states=True)
    return out.hidden_states[model.config.vision_feature_layer]


def pixels(processor: Any, items: list[TrainItem]) -> torch.Tensor:
    return processor.image_processor([it.image for it in items], return_tensors="pt")["pixel_values"]


def prompt_text(processor: Any, prompt: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return str(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def encode(processor: Any, items: list[TrainItem], targets: list[str] | None = None) -> tuple[dict, torch.Tensor]:
    """Right-padded ``prompt + target + <|im_end|>`` batch and the mask of the target's tokens."""
    targets = [it.target for it in items] if targets is None else targets
    prompts = [prompt_text(processor, it.prompt) for it in items]
    images = [it.image for it in items]
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "right"
    try:
        context = processor(text=prompts, images=images, padding=True, return_tensors="pt")
        full = processor(
            text=[p + t + END for p, t in zip(prompts, targets, strict=True)],
            images=images,
            padding=True,
            return_tensors="pt",
        )
    finally:
        tok.padding_side = side
    starts = context["attention_mask"].sum(dim=1)
    ends = full["attention_mask"].sum(dim=1)
    positions = torch.arange(full["input_ids"].shape[1])[None, :]
    target_mask = (positions >= starts[:, None]) & (positions < ends[:, None])
    return dict(full), target_mask


def answer_logits(model: Any, batch: dict, target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits predicting each target token (only there: the 49k-wide head is the costly part)."""
    hidden = model.model(
        input_ids=batch["input_ids"], pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    predicting = torch.zeros_like(target_mask)
    predicting[:, :-1] = target_mask[:, 1:]  # position t predicts token t + 1
    logits = model.lm_head(hidden[predicting])
    return logits, batch["input_ids"][target_mask]


@torch.no_grad()
def validate(model: Any, processor: Any, items: list[TrainItem]) -> dict[str, float]:
    """Exact greedy accuracy per kind, teacher-forced (greedy decoding reproduces the target and
    ``<|im_end|>`` exactly when every target token is the argmax), choice kinds by lowest NLL."""
    right: dict[str, list[int]] = {}
    for start in range(0, len(items), 8):
        chunk = items[start : start + 8]
        generate = [it for it in chunk if TASK_OF_KIND[it.kind].startswith("qig_vqa")]
        if generate:
            batch, mask = encode(processor, generate)
            logits, target = answer_logits(model, batch, mask)
            hits = (logits.argmax(-1) == target).tolist()
            counts = mask.sum(dim=1).tolist()
            offset = 0
            for it, n in zip(generate, counts, strict=True):
                right.setdefault(it.kind, []).append(int(all(hits[offset : offset + n])))
                offset += n
        for it in chunk:
            if it in generate:
                continue
            options = [" " + c for c in classes(it.kind)]
            batch, mask = encode(processor, [it] * len(options), options)
            logits, target = answer_logits(model, batch, mask)
            nll = -torch.log_softmax(logits, -1).gather(-1, target[:, None])[:, 0]
            counts = mask.sum(dim=1).tolist()
            # the choice's own tokens (the trailing <|im_end|> is not part of the harness's continuation)
            scores, offset = [], 0
            for n in counts:
                scores.append(float(nll[offset : offset + n - 1].sum()))
                offset += n
            right.setdefault(it.kind, []).append(int(int(np.argmin(scores)) == it.label))
    out = {kind: float(np.mean(v)) for kind, v in right.items()}
    out["mean"] = float(np.mean(list(out.values())))
    return out


class Trainer:
    def __init__(self, config: TrainConfig, out: Path, decoder_dir: Path, log: Any = sys.stdout) -> None:
        self.config, self.out, self.log = config, out, log
        torch.set_num_threads(config.threads)
        self.processor = build_processor(decoder_dir)
        self.model = build_model(decoder_dir, self.processor, seed=config.seed)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tower = self.model.model.vision_tower
        self.projector = self.model.model.multi_modal_projector
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            self.heads = Heads(VISION.hidden_size, VISION.image_tokens, config.kinds, config.token_heads)
        self.pool = training_pool(config.pool, config.seed, config.kinds)
        # the pool's images, processed once (float16: 5,000 x 3 x 96 x 96 is 276 MB)
        self.pool_pixels = torch.cat(
            [pixels(self.processor, self.pool[i : i + 500]).half() for i in range(0, len(self.pool), 500)]
        )
        self.validation = validation_items(config.validation_size, config.kinds)
        self.progress = Progress()
        self.optimizer = self._optimizer(0)
        self._load()

    # -- state -----------------------------------------------------------------------------------
    def _optimizer(self, stage: int) -> torch.optim.Optimizer:
        c = self.config
        groups: list[dict[str, Any]]
        if stage == 0:
            groups = [{"params": [*self.tower.parameters(), *self.heads.parameters()], "lr": c.stage0_lr}]
        else:
            groups = [
                {"params": list(self.projector.parameters()), "lr": c.projector_lr},
                {"params": list(self.tower.parameters()), "lr": c.tower_lr},
            ]
        for g in groups:
            g["base_lr"] = g["lr"]
            for p in g["params"]:
                p.requires_grad_(True)
        return torch.optim.AdamW(groups, weight_decay=c.weight_decay)

    def _state(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "progress": asdict(self.progress),
            "tower": self.tower.state_dict(),
            "projector": self.projector.state_dict(),
            "heads": self.heads.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def save(self) -> None:
        tmp = self.out / f".{CHECKPOINT}.tmp"
        torch.save(self._state(), tmp)
        os.replace(tmp, self.out / CHECKPOINT)

    def _load(self) -> None:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return
        state = torch.load(path, weights_only=False)
        if state["config"] != asdict(self.config):
            raise SystemExit(f"{path} was written with another configuration; use a fresh --out")
        self.tower.load_state_dict(state["tower"])
        self.projector.load_state_dict(state["projector"])
        self.heads.load_state_dict(state["heads"])
        self.progress = Progress(**state["progress"])
        self.progress.resumed += 1
        self.optimizer = self._optimizer(self.progress.stage)
        self.optimizer.load_state_dict(state["optimizer"])
        self.say(f"resumed at stage {self.progress.stage}, step {self.progress.step}")

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.log, flush=True)

    # -- stages ----------------------------------------------------------------------------------
    def run(self) -> None:
        c = self.config
        if self.progress.stage == 0:
            self._stage(0, c.stage0_steps, c.stage0_batch, self._stage0_step)
            accuracy = self.tower_accuracy(self.validation)
            self.progress.validation.append({"stage": 0, "step": c.stage0_steps, **accuracy})
            self.say(f"tower (stage 0) validation: {accuracy}")
            self.progress.stage, self.progress.step = 1, 0
            for p in self.heads.parameters():
                p.requires_grad_(False)
            self.optimizer = self._optimizer(1)
            self.save()
        if self.progress.stage == 1:
            self._stage(1, c.stage1_steps, c.stage1_batch, self._stage1_step)
            self.progress.stage = 2
            self.save()
        self.model.eval()
        result = validate(self.model, self.processor, self.validation)
        self.progress.validation.append({"stage": 2, "step": c.stage1_steps, **result})
        self.say(f"final validation {result}")
        self.export()

    def _stage(self, stage: int, total: int, size: int, step_fn: Any) -> None:
        c = self.config
        wall_key, cpu_key = f"stage{stage}_wall", f"stage{stage}_cpu"
        while self.progress.step < total:
            step = self.progress.step
            factor = lr_factor(step, total, c.warmup)
            for g in self.optimizer.param_groups:
                g["lr"] = g["base_lr"] * factor
            chosen = batch_indices(c, stage, step, size)
            items = [self.pool[i] for i in chosen]
            t0, c0 = time.perf_counter(), time.process_time()
            loss, extra = step_fn(items, chosen)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            self.progress.seconds[wall_key] = self.progress.seconds.get(wall_key, 0.0) + wall
            self.progress.seconds[cpu_key] = self.progress.seconds.get(cpu_key, 0.0) + cpu
            self.progress.losses.append({"stage": stage, "step": step, "loss": loss, **extra})
            self.progress.step += 1
            if step % 10 == 0 or step == total - 1:
                took = f"({wall:.1f}s wall, {cpu:.1f}s cpu)"
                self.say(f"stage {stage} step {step + 1}/{total} loss {loss:.4f} {extra} {took}")
            if stage == 0 and (step + 1) % c.validate_every == 0 and step + 1 < total:
                self.say(f"tower validation at step {step + 1}: {self.tower_accuracy(self.validation)}")
            if stage == 1 and (step + 1) % c.validate_every == 0 and step + 1 < total:
                self.model.eval()
                result = validate(self.model, self.processor, self.validation)
                self.progress.validation.append({"stage": 1, "step": step + 1, **result})
                self.say(f"validation at step {step + 1}: {result}")
            if self.progress.step % c.checkpoint_every == 0:
                self.save()

    @torch.no_grad()
    def tower_accuracy(self, items: list[TrainItem]) -> dict[str, float]:
        """Stage 0's classifiers on the validation items, per kind."""
        self.tower.eval()
        right: dict[str, list[int]] = {}
        for start in range(0, len(items), 64):
            chunk = items[start : start + 64]
            features = tower_features(self.model, pixels(self.processor, chunk))
            for i, it in enumerate(chunk):
                right.setdefault(it.kind, []).append(int(self.heads.predict(features[i : i + 1], it.kind) == it.label))
        return {k: float(np.mean(v)) for k, v in right.items()}

    def _stage0_step(self, items: list[TrainItem], chosen: list[int]) -> tuple[float, dict[str, float]]:
        self.tower.train()
        loss, acc = self.heads(tower_features(self.model, self.pool_pixels[chosen].float()), items)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
        self.optimizer.step()
        return float(loss.detach()), {"acc": acc}

    def _stage1_step(self, items: list[TrainItem], chosen: list[int]) -> tuple[float, dict[str, float]]:
        self.model.eval()  # no dropout anywhere; the decoder is frozen
        batch, mask = encode(self.processor, items)
        logits, target = answer_logits(self.model, batch, mask)
        loss = nn.functional.cross_entropy(logits, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
        self.optimizer.step()
        return float(loss.detach()), {"tokens": int(mask.sum())}

    # -- output ----------------------------------------------------------------------------------
    def export(self) -> None:
        from safetensors.torch import save_file

        save_file(trained_state(self.model), str(self.out / WEIGHTS_FILE), metadata={"alias": ALIAS})
        seconds = self.progress.seconds
        record = {
            "alias": ALIAS,
            "seed": self.config.seed,
            "recipe": recipe_name(self.config),
            "config": asdict(self.config),
            "vision": asdict(VISION),
            "steps": {"stage0": self.config.stage0_steps, "stage1": self.config.stage1_steps},
            "train_seconds": {k: round(v, 1) for k, v in seconds.items()},
            "train_minutes_wall": round(sum(v for k, v in seconds.items() if k.endswith("wall")) / 60, 1),
            "resumed": self.progress.resumed,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{self.config.threads} threads",
            "final_loss": {
                f"stage{s}": float(np.mean([e["loss"] for e in self.progress.losses if e["stage"] == s][-20:]))
                for s in (0, 1)
            },
            "validation": self.progress.validation,
        }
        (self.out / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        self.say(f"wrote {self.out / WEIGHTS_FILE} and {self.out / RECORD_FILE}")


# -- held-out accuracy through the harness ------------------------------------------------------------
def evaluate_weights(
    weights: Path, decoder_dir: Path, tasks: list[str], limit: int, threads: int = 1
) -> dict[str, float]:
    """Accuracy of a weights file on the held-out pack (seed 0), through lmms-eval, as the benchmark measures."""
    import tempfile

    from qigbench.eval.runner import evaluate_vlm
    from qigbench.eval.tasks import LMMS_SUBDIR, write_task_pack

    torch.set_num_threads(threads)
    processor = build_processor(decoder_dir)
    model = build_model(decoder_dir, processor)
    load_trained(model, weights)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    with tempfile.TemporaryDirectory(prefix="qigbench-pack-") as tmp:
        pack = write_task_pack(tmp, seed=0, n=max(32, limit))
        found = evaluate_vlm(model, processor, tasks, include_path=str(pack / LMMS_SUBDIR), limit=limit)
    return {task: next(iter(found.metrics[task].values())) for task in tasks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qigbench.training.smollm2_llava", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("command", choices=("train", "evaluate", "install"))
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, weights, record, log)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="v2", help="v2 made the committed weights")
    parser.add_argument("--stage0-steps", type=int, default=TrainConfig.stage0_steps)
    parser.add_argument("--stage1-steps", type=int, help="default: the recipe's (v1 250, v2 400)")
    parser.add_argument("--pool", type=int, default=TrainConfig.pool, help="training items")
    parser.add_argument("--validation-size", type=int, default=TrainConfig.validation_size)
    parser.add_argument("--validate-every", type=int, default=TrainConfig.validate_every)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument("--limit", type=int, default=32, help="held-out items per task (evaluate; 32: the pack's)")
    parser.add_argument("--tasks", default=",".join(TASK_OF_KIND[k] for k in TRAIN_KINDS))
    parser.add_argument("--cache-dir", help="qigbench cache (the converted SmolLM2)")
    args = parser.parse_args(argv)

    from qigbench.models.smollm2 import ensure_smollm2

    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "train":
        recipe = dict(RECIPES[args.recipe])
        if args.stage1_steps is not None:
            recipe["stage1_steps"] = args.stage1_steps
        config = TrainConfig(
            seed=args.seed,
            pool=args.pool,
            stage0_steps=args.stage0_steps,
            **recipe,
            threads=args.threads,
            validation_size=args.validation_size,
            validate_every=args.validate_every,
        )
        Trainer(config, args.out, ensure_smollm2(args.cache_dir)).run()
        return 0
    record_path = args.out / RECORD_FILE
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if args.command == "evaluate":
        t0 = time.perf_counter()
        tasks = [t for t in args.tasks.split(",") if t]
        decoder = ensure_smollm2(args.cache_dir)
        accuracy = evaluate_weights(args.out / WEIGHTS_FILE, decoder, tasks, args.limit, args.threads)
        record["accuracy"] = {t: round(v, 4) for t, v in accuracy.items()}
        record["accuracy_mean"] = round(float(np.mean(list(accuracy.values()))), 4)
        record["accuracy_limit"] = args.limit
        record["accuracy_seconds"] = round(time.perf_counter() - t0)
        record["accuracy_note"] = (
            "held-out pack items (first accuracy_limit per task, pack seed 0), through lmms-eval: "
            f"python -m qigbench.training.smollm2_llava evaluate --out RUN --limit {args.limit}"
        )
        record_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(
            json.dumps(
                {
                    "accuracy": record["accuracy"],
                    "mean": record["accuracy_mean"],
                    "seconds": round(time.perf_counter() - t0),
                }
            )
        )
        return 0
    target = weights_path().parent
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.out / WEIGHTS_FILE, target / WEIGHTS_FILE)
    shutil.copyfile(record_path, target / RECORD_FILE)
    print(f"installed {WEIGHTS_FILE} and {RECORD_FILE} into {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
