"""Offline synthetic calibration sets in the real on-disk formats.

CI has no COCO, ShareGPT4V or InfoVQA, but it must exercise the same loaders users run on them.
This module draws images with PIL (coloured shapes, bar charts, rendered digits and words) and
writes them as PNG files plus a ShareGPT4V-style JSON whose captions (or OCR question/answer
pairs) are *true* descriptions of the drawn content. Everything is driven by one
``random.Random(seed)``, so a (n, seed, kind, image_size) tuple gives byte-identical files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from qigbench.errors import QigbenchError

CaptionKind = Literal["caption", "ocr"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
WORDS = (
    "harbor", "lantern", "meadow", "signal", "copper", "orbit", "garden", "river", "planet", "window",
    "market", "silver", "canyon", "marble", "forest", "pepper", "violet", "anchor", "rocket", "pillow",
)  # fmt: skip
BAR_LABELS = ("A", "B", "C", "D", "E", "F")
CAPTION_PROMPTS = (
    "Describe the image.",
    "What is shown in this picture?",
    "Write a short caption for this image.",
    "Give a brief description of the image.",
)


class SyntheticDataError(QigbenchError, ValueError):
    """Bad arguments to the synthetic generator."""


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font (no system fonts: the output must not depend on the machine)."""
    return ImageFont.load_default(size=size)


def _where(x: float, y: float) -> str:
    vertical = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
    horizontal = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
    return "centre" if (vertical, horizontal) == ("middle", "centre") else f"{vertical} {horizontal}"


def _shapes(rng: random.Random, size: int, kind: CaptionKind) -> tuple[Image.Image, str, str]:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    n = rng.randint(1, 3)
    cells = rng.sample([(cx, cy) for cx in range(3) for cy in range(3)], n)
    parts = []
    for cx, cy in cells:
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        r = size // 8
        x, y = int((cx + 0.5) * size / 3), int((cy + 0.5) * size / 3)
        box = (x - r, y - r, x + r, y + r)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=COLOURS[colour])
        article = "an" if colour[0] in "aeiou" else "a"
        parts.append(f"{article} {colour} {shape} in the {_where(x / size, y / size)}")
    listing = parts[0] if n == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    caption = f"A white background with {listing}."
    return image, rng.choice(CAPTION_PROMPTS), caption


def _bar_chart(rng: random.Random, size: int, kind: CaptionKind) -> tuple[Image.Image, str, str]:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    font = _font(max(8, size // 14))
    n = rng.randint(3, 5)
    labels, values = BAR_LABELS[:n], [rng.randint(1, 9) for _ in range(n)]
    colour = rng.choice([c for c in COLOURS if c != "black"])
    base, top, width = int(size * 0.85), int(size * 0.12), (size * 0.8) / n
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x0 = int(size * 0.1 + i * width + width * 0.15)
        x1 = int(size * 0.1 + (i + 1) * width - width * 0.15)
        y0 = base - int((base - top) * value / 9)
        draw.rectangle((x0, y0, x1, base), fill=COLOURS[colour])
        draw.text(((x0 + x1) // 2, base + 2), label, fill="black", font=font, anchor="mt")
        draw.text(((x0 + x1) // 2, y0 - 2), str(value), fill="black", font=font, anchor="mb")
    draw.line((int(size * 0.08), base, int(size * 0.95), base), fill="black", width=1)
    if kind == "ocr":
        i = rng.randrange(n)
        return image, f"What is the value of bar {labels[i]} in the chart?", str(values[i])
    tallest = [label for label, value in zip(labels, values, strict=True) if value == max(values)]
    pairs = ", ".join(f"{label} is {value}" for label, value in zip(labels, values, strict=True))
    verdict = f"Bar {tallest[0]} is" if len(tallest) == 1 else f"Bars {' and '.join(tallest)} are"
    caption = (
        f"A bar chart with {n} {colour} bars labelled {labels[0]} to {labels[-1]}: {pairs}. {verdict} the tallest."
    )
    return image, rng.choice(CAPTION_PROMPTS), caption


def _rendered_text(rng: random.Random, size: int, kind: CaptionKind, digits: bool) -> tuple[Image.Image, str, str]:
    background = rng.choice(["white", "yellow"])
    image = Image.new("RGB", (size, size), COLOURS["yellow"] if background == "yellow" else (255, 255, 255))
    draw = ImageDraw.Draw(image)
    text = str(rng.randint(10, 99999)) if digits else rng.choice(WORDS)
    colour = rng.choice(["black", "blue", "red"])
    font = _font(max(10, size // (len(text) + 1)))
    draw.text((size // 2, size // 2), text, fill=COLOURS[colour], font=font, anchor="mm")
    what = "number" if digits else "word"
    if kind == "ocr":
        return image, f"What {what} is written in the image?", text
    caption = f'The {what} "{text}" written in {colour} on a {background} background.'
    return image, rng.choice(CAPTION_PROMPTS), caption


Scene = Callable[[random.Random, int, CaptionKind], tuple[Image.Image, str, str]]
SCENES: dict[CaptionKind, tuple[Scene, ...]] = {
    "caption": (
        _shapes,
        _bar_chart,
        lambda rng, size, kind: _rendered_text(rng, size, kind, digits=True),
        lambda rng, size, kind: _rendered_text(rng, size, kind, digits=False),
    ),
    # OCR questions need text in the image: no plain-shape scenes
    "ocr": (
        _bar_chart,
        lambda rng, size, kind: _rendered_text(rng, size, kind, digits=True),
        lambda rng, size, kind: _rendered_text(rng, size, kind, digits=False),
    ),
}


def write_caption_set(
    directory: str | Path, n: int, seed: int, kind: CaptionKind = "caption", image_size: int = 64
) -> Path:
    """Write ``n`` PNG images and a ShareGPT4V JSON (``<kind>.json``) into ``directory``; return the JSON path.

    Images go to ``images/<id>.png`` relative to the JSON, as ShareGPT4V's relative image paths do.
    ``image_size`` is the square side in pixels (small by default: CI models are tiny).
    """
    if kind not in SCENES:
        raise SyntheticDataError(f"kind must be one of {sorted(SCENES)}, got {kind!r}.")
    if n < 1 or image_size < 16:
        raise SyntheticDataError(f"need n >= 1 and image_size >= 16, got n={n}, image_size={image_size}.")
    root = Path(directory)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{kind}:{seed}")
    entries = []
    for i in range(n):
        sample_id = f"synthetic-{kind}-{seed}-{i:05d}"
        image, prompt, answer = rng.choice(SCENES[kind])(rng, image_size, kind)
        relative = f"images/{sample_id}.png"
        image.save(root / relative, format="PNG")
        entries.append(
            {
                "id": sample_id,
                "image": relative,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{prompt}"},
                    {"from": "gpt", "value": answer},
                ],
            }
        )
    path = root / f"{kind}.json"
    path.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    return path


_SUBJECTS = ("The old lighthouse", "A small village", "The river", "Our team", "The museum", "A quiet library")
_VERBS = ("stands near", "looks over", "was built beside", "is known for", "opens onto", "lies beyond")
_OBJECTS = ("the northern harbor", "a field of sunflowers", "the copper bridge", "the busy market",
            "a row of silver birches", "the marble steps")  # fmt: skip
_CODAS = (
    "Visitors often arrive early in the morning.",
    "In winter the paths are covered with snow.",
    "Many people stop there to read or rest.",
    "The view is best just before sunset.",
    "Local children like to count the boats.",
)


def write_text_set(directory: str | Path, n: int, seed: int) -> Path:
    """Write ``n`` short English passages as ``text.jsonl`` (one ``{"id", "text"}`` per line)."""
    if n < 1:
        raise SyntheticDataError(f"need n >= 1, got {n}.")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"text:{seed}")
    lines = []
    for i in range(n):
        sentences = [
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}. {rng.choice(_CODAS)}"
            for _ in range(rng.randint(2, 4))
        ]
        lines.append(json.dumps({"id": f"synthetic-text-{seed}-{i:05d}", "text": " ".join(sentences)}))
    path = root / "text.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
