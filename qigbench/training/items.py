"""Training items for smollm2-llava, disjoint from the held-out evaluation items by construction.

The evaluation pack (:mod:`qigbench.eval.tasks.pack`) draws task ``k`` of seed ``s`` from
``random.Random(s * 1000 + offset_k)`` with the canonical renderers of
:mod:`qigbench.eval.tasks.render`. Training items come from the same renderers (so questions,
answers and answer formats are the pack's) but

* from their own seed stream (``random.Random("qigbench-train:SEED:INDEX")``);
* for bar charts (1,680 layouts), a layout that
  appears among the first :data:`EVAL_HORIZON` items of the pack at any of :data:`EVAL_SEEDS`
  is never trained on (redrawn);
* every training image is a *perturbed* rendering (content rescaled by 0.72-0.98 and moved, on a
  white or lightly tinted background), so no training image equals any canonical rendering, and
  the colour / shape / diagram kinds, whose canonical renderings are only 18 / 18 / 4 images, are
  evaluated on images the model never saw.

``tests/training/test_items.py`` proves it against the pack files themselves (written by
``write_task_pack``, images read back from its parquet files).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from PIL import Image

from qigbench.eval.tasks.pack import LMMS_TASKS
from qigbench.eval.tasks.render import RENDERERS, Sample

#: the pack's kinds the model is trained on (OCR needs more resolution than 36 image tokens give)
TRAIN_KINDS: tuple[str, ...] = ("colour", "shape", "count", "chart", "diagram")
#: kinds whose held-out *layouts* are excluded from training (the others have too few layouts to exclude)
LAYOUT_EXCLUDED: frozenset[str] = frozenset({"chart"})
#: the pack seeds and item count guarded: ``qigbench run`` writes the pack at seed 0 with
#: ``n = max(32, --limit)``; the first n items of a task do not depend on n
EVAL_SEEDS: tuple[int, ...] = (0, 1, 2)
EVAL_HORIZON = 256
#: the pack task of each kind and its prompt/answer format (the task YAML templates')
TASK_OF_KIND: dict[str, str] = {kind: task for task, (kind, _) in LMMS_TASKS.items()}
TEMPLATE_OF_KIND: dict[str, str] = {kind: template for _, (kind, template) in LMMS_TASKS.items()}


@dataclass(frozen=True)
class TrainItem:
    kind: str
    image: Image.Image
    prompt: str  # the task's ``doc_to_text`` (what the harness puts after the image)
    target: str  # what the model must answer: the generation target, or " " + the right choice
    label: int  # class index within the kind (stage-0 pretraining of the tower)
    source_hash: str  # the canonical rendering this item was perturbed from (its layout)


def image_hash(image: Image.Image) -> str:
    """Identity of an image's pixels (mode, size and bytes)."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def classes(kind: str) -> tuple[str, ...]:
    """The answers a kind can have, in a fixed order (the stage-0 head's classes)."""
    from qigbench.eval.tasks import render

    return {
        "colour": tuple(render.COLOURS),
        "shape": render.SHAPES,
        "count": tuple(str(n) for n in range(1, 6)),
        "chart": render.BAR_LABELS,
        "diagram": render.QUADRANTS,
    }[kind]


def prompt_and_target(kind: str, sample: Sample) -> tuple[str, str]:
    """The harness's view of a sample: generate tasks ask ``question`` and grade the answer; choice
    tasks ask ``question + "\\nAnswer:"`` and score ``" " + choice`` (lmms-eval's target delimiter)."""
    if TEMPLATE_OF_KIND[kind] == "choice":
        return f"{sample.question}\nAnswer:", " " + sample.choices[sample.label]
    return sample.question, sample.answer


@cache
def held_out_hashes(kind: str) -> frozenset[str]:
    """Canonical images of the pack's held-out items of ``kind`` (every seed in EVAL_SEEDS)."""
    offset = list(LMMS_TASKS).index(TASK_OF_KIND[kind])
    found: set[str] = set()
    for seed in EVAL_SEEDS:
        rng = random.Random(seed * 1000 + offset)
        found.update(image_hash(RENDERERS[kind](rng).image) for _ in range(EVAL_HORIZON))
    return frozenset(found)


def perturb(image: Image.Image, rng: random.Random) -> Image.Image:
    """The rendering shrunk to 72-98% and moved on its canvas, on white or a light tint."""
    width, height = image.size
    scale = rng.uniform(0.72, 0.98)
    w, h = max(8, round(width * scale)), max(8, round(height * scale))
    small = image.resize((w, h), Image.Resampling.BILINEAR)
    tinted = rng.random() < 0.5
    background = tuple(rng.randint(228, 250) for _ in range(3)) if tinted else (255, 255, 255)
    canvas = Image.new("RGB", (width, height), background)
    mask = None
    if tinted:  # the drawing on the tint: pixels that are not the renderer's white background
        mask = small.convert("L").point(lambda v: 0 if v >= 250 else 255)
    canvas.paste(small, (rng.randint(0, width - w), rng.randint(0, height - h)), mask)
    return canvas


def training_item(seed: int, index: int, kinds: Sequence[str] = TRAIN_KINDS) -> TrainItem:
    """Item ``index`` of the training stream ``seed`` (deterministic; the kinds take turns)."""
    kind = kinds[index % len(kinds)]
    rng = random.Random(f"qigbench-train:{seed}:{index}")
    while True:
        sample = RENDERERS[kind](rng)
        if kind not in LAYOUT_EXCLUDED or image_hash(sample.image) not in held_out_hashes(kind):
            break
    prompt, target = prompt_and_target(kind, sample)
    label = classes(kind).index(sample.answer)
    return TrainItem(kind, perturb(sample.image, rng), prompt, target, label, image_hash(sample.image))


def training_pool(n: int, seed: int, kinds: Sequence[str] = TRAIN_KINDS) -> list[TrainItem]:
    """The first ``n`` items of the training stream: what the committed weights were trained on."""
    return [training_item(seed, i, kinds) for i in range(n)]


def validation_items(n: int, kinds: Sequence[str] = TRAIN_KINDS) -> list[TrainItem]:
    """Canonical renderings from a seed stream of their own, for monitoring training (not for the
    reported accuracy, which the harness measures on the pack): layouts of held-out items excluded."""
    out = []
    for index in range(n):
        kind = kinds[index % len(kinds)]
        rng = random.Random(f"qigbench-validation:{index}")
        while True:
            sample = RENDERERS[kind](rng)
            if kind not in LAYOUT_EXCLUDED or image_hash(sample.image) not in held_out_hashes(kind):
                break
        prompt, target = prompt_and_target(kind, sample)
        label = classes(kind).index(sample.answer)
        out.append(TrainItem(kind, sample.image, prompt, target, label, image_hash(sample.image)))
    return out
