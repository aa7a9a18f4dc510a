"""Seeded image renderers for the offline multimodal tasks.

Each ``make_*`` draws one image with PIL and returns it with its ground truth, so the answer is
a property of the pixels (an oracle that reads the image can score 1.0; a blind model cannot).
Everything is drawn from the ``random.Random`` passed in: the same seed gives the same pack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 20),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
}
SHAPES = ("circle", "square", "triangle")
BAR_LABELS = ("A", "B", "C", "D")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
OCR_WORDS = ("cat", "river", "seven", "lamp", "green", "stone", "paper", "cloud", "tiger", "bread")

_BACKGROUND = (255, 255, 255)
_INK = (0, 0, 0)


@dataclass
class Sample:
    """One rendered example: the image, its question and the ground truth."""

    image: Image.Image
    question: str
    answer: str
    choices: list[str] = field(default_factory=list)  # multiple choice only
    label: int = -1  # index of ``answer`` in ``choices`` (multiple choice only)


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple[int, int, int]
) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def make_colour(rng: random.Random, size: int = 64) -> Sample:
    """One shape filling most of the canvas; the answer is its colour name."""
    colour = rng.choice(list(COLOURS))
    shape = rng.choice(SHAPES)
    img = Image.new("RGB", (size, size), _BACKGROUND)
    m = size // 8
    _draw_shape(ImageDraw.Draw(img), shape, (m, m, size - m, size - m), COLOURS[colour])
    return Sample(img, "What colour is the shape? Answer with one word.", colour)


def make_shape(rng: random.Random, size: int = 64) -> Sample:
    """One shape in a random colour; the answer is the shape name."""
    colour = rng.choice(list(COLOURS))
    shape = rng.choice(SHAPES)
    img = Image.new("RGB", (size, size), _BACKGROUND)
    m = size // 8
    _draw_shape(ImageDraw.Draw(img), shape, (m, m, size - m, size - m), COLOURS[colour])
    return Sample(img, "What shape is shown? Answer with one word.", shape)


def make_count(rng: random.Random, size: int = 96, max_count: int = 5) -> Sample:
    """1..max_count dots placed in distinct cells of a 3x3 grid (never touching)."""
    count = rng.randint(1, max_count)
    cells = rng.sample(range(9), count)
    img = Image.new("RGB", (size, size), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    step = size // 3
    for cell in cells:
        cx, cy = (cell % 3) * step + step // 2, (cell // 3) * step + step // 2
        r = step // 3
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=COLOURS["blue"])
    return Sample(img, "How many dots are there? Answer with a number.", str(count))


def make_chart(rng: random.Random, size: int = 96) -> Sample:
    """A bar chart of four labelled bars with distinct heights; which one is tallest?"""
    heights = rng.sample(range(2, 10), len(BAR_LABELS))
    img = Image.new("RGB", (size, size), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=size // 8)
    base = size - size // 6
    width = size // (2 * len(BAR_LABELS) + 1)
    for i, (name, h) in enumerate(zip(BAR_LABELS, heights, strict=True)):
        x0 = width * (2 * i + 1)
        draw.rectangle((x0, base - h * base // 10, x0 + width, base), fill=COLOURS["green"])
        draw.text((x0, base + 1), name, fill=_INK, font=font)
    draw.line((0, base, size, base), fill=_INK)
    label = max(range(len(heights)), key=heights.__getitem__)
    question = "Which bar is the tallest?\nA. A\nB. B\nC. C\nD. D\nAnswer with the option's letter."
    return Sample(img, question, BAR_LABELS[label], list(BAR_LABELS), label)


def make_diagram(rng: random.Random, size: int = 96) -> Sample:
    """A 2x2 diagram (frame and dividers) with one filled marker; in which quadrant is it?"""
    label = rng.randrange(len(QUADRANTS))
    img = Image.new("RGB", (size, size), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    half = size // 2
    draw.rectangle((1, 1, size - 2, size - 2), outline=_INK)
    draw.line((half, 0, half, size), fill=_INK)
    draw.line((0, half, size, half), fill=_INK)
    cx = (label % 2) * half + half // 2
    cy = (label // 2) * half + half // 2
    r = half // 4
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=COLOURS["red"])
    choices = list(QUADRANTS)
    question = "In which part of the diagram is the red marker?"
    return Sample(img, question, choices[label], choices, label)


def render_text(text: str, height: int = 40) -> Image.Image:
    """``text`` in black on white, deterministic pixels (same text, same image)."""
    font = ImageFont.load_default(size=height // 2)
    img = Image.new("RGB", (height * 4, height), _BACKGROUND)
    ImageDraw.Draw(img).text((height // 4, height // 4), text, fill=_INK, font=font)
    return img


def make_ocr(rng: random.Random, height: int = 40) -> Sample:
    """A word or a 3-5 digit number rendered in black on white; read it."""
    text = rng.choice(OCR_WORDS) if rng.random() < 0.5 else str(rng.randint(100, 99999))
    return Sample(render_text(text, height), "What text is written in the image? Answer with the text only.", text)


RENDERERS = {
    "colour": make_colour,
    "shape": make_shape,
    "count": make_count,
    "chart": make_chart,
    "diagram": make_diagram,
    "ocr": make_ocr,
}
