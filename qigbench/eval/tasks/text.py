"""Seeded text for the offline lm-eval tasks: simple prose (perplexity) and arithmetic questions.

The prose is generated from a small grammar so a real LM finds it plausible English (its
perplexity is far below a random model's), yet it needs no download.
"""

from __future__ import annotations

import random

_ADJ = ("red", "small", "old", "quiet", "bright", "heavy", "green", "happy")
_NOUN = ("cat", "dog", "boy", "girl", "teacher", "bird", "farmer", "child")
_VERB = ("saw", "found", "liked", "carried", "painted", "watched", "moved", "cleaned")
_OBJ = ("the house", "a book", "the garden", "a small box", "the river", "an apple", "the car", "a chair")
_TIME = ("In the morning", "Yesterday", "After lunch", "Every day", "Later that night", "On Sunday")


def sentence(rng: random.Random) -> str:
    """One grammatical sentence such as 'Yesterday the old dog found a book.'"""
    return f"{rng.choice(_TIME)} the {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_VERB)} {rng.choice(_OBJ)}."


def paragraph(rng: random.Random, sentences: int = 4) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def arithmetic_question(rng: random.Random, n_choices: int = 4) -> tuple[str, list[str], int]:
    """'What is 3 plus 4?' with ``n_choices`` distinct numeric choices; returns (question, choices, label)."""
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    answer = a + b
    wrong = rng.sample([v for v in range(2, 19) if v != answer], n_choices - 1)
    choices = [*wrong, answer]
    rng.shuffle(choices)
    return f"What is {a} plus {b}?", [str(c) for c in choices], choices.index(answer)
