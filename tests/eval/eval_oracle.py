"""Test models for the lmms-eval wrapper: an oracle that reads answers off the pixels, and a random one.

The oracle decodes every answer from the image it was handed (colour of the shape, fill ratio
for the shape, dots in the grid, tallest bar, marked quadrant; OCR by re-rendering the ground
truth and demanding pixel equality). It scores 1.0 only if the rendered images flow intact from
the parquet file through lmms-eval's ``doc_to_visual`` and our request handling, and the harness's
metrics count right answers as right.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from qigbench.eval.lmms_model import QigbenchVLM, Request
from qigbench.eval.tasks import LMMS_TASKS, render

WHITE = np.array([255, 255, 255])


def _ink(pixel: np.ndarray) -> bool:
    return bool(np.abs(pixel.astype(int) - WHITE).sum() > 60)


def read_answer(kind: str, image: Image.Image, doc: dict) -> str:
    px = np.asarray(image.convert("RGB"))
    h, w, _ = px.shape
    if kind == "colour":
        centre = px[h // 2, w // 2].astype(int)
        return min(render.COLOURS, key=lambda name: np.abs(np.array(render.COLOURS[name]) - centre).sum())
    if kind == "shape":
        mask = np.abs(px.astype(int) - WHITE).sum(-1) > 60
        ys, xs = np.nonzero(mask)
        fill = mask.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
        return "square" if fill > 0.92 else "circle" if fill > 0.65 else "triangle"
    if kind == "count":
        step = w // 3
        return str(sum(_ink(px[r * step + step // 2, c * step + step // 2]) for r in range(3) for c in range(3)))
    if kind == "chart":
        base, width = h - h // 6, w // (2 * len(render.BAR_LABELS) + 1)
        tops = []
        for i in range(len(render.BAR_LABELS)):
            column = px[:base, width * (2 * i + 1) + width // 2]
            tops.append(next(y for y in range(base) if _ink(column[y])))
        return render.BAR_LABELS[int(np.argmin(tops))]
    if kind == "diagram":
        half = w // 2
        centres = [((q % 2) * half + half // 2, (q // 2) * half + half // 2) for q in range(4)]
        return render.QUADRANTS[next(q for q, (x, y) in enumerate(centres) if _ink(px[y, x]))]
    if kind == "ocr":
        same = np.array_equal(px, np.asarray(render.render_text(doc["answer"], h)))
        return doc["answer"] if same else ""
    raise AssertionError(kind)


class OracleVLM(QigbenchVLM):
    """Answers from the pixels it receives; never calls the network."""

    def _answer(self, r: Request) -> str:
        assert r.task is not None and r.doc is not None and len(r.visuals) == 1
        return read_answer(LMMS_TASKS[r.task][0], r.visuals[0], r.doc)

    def generate(self, batch: list[Request]) -> list[str]:
        return [self._answer(r) for r in batch]

    def choice_nll(self, batch: list[Request]) -> list[tuple[float, bool]]:
        return [(0.0, True) if r.continuation.strip() == self._answer(r) else (10.0, False) for r in batch]


ANSWERS = {
    "colour": list(render.COLOURS),
    "shape": list(render.SHAPES),
    "count": [str(i) for i in range(1, 6)],
    "ocr": list(render.OCR_WORDS),
}


class RandomVLM(QigbenchVLM):
    """Guesses: a random answer of the right kind, random choice scores."""

    rng = random.Random(0)

    def generate(self, batch: list[Request]) -> list[str]:
        return [self.rng.choice(ANSWERS[LMMS_TASKS[r.task][0]]) for r in batch if r.task]

    def choice_nll(self, batch: list[Request]) -> list[tuple[float, bool]]:
        return [(self.rng.random(), False) for _ in batch]
