"""How long a calibration sample may be: the model's own position limit, unless ``--max-length`` says less.

A caption is tokenized whole; without a limit a 10,000-token caption ran past the tiny model's 512
positions (the rotary models do not refuse it: they compute on positions they were never trained
on) and, for attribution, asked for tens of GB at once. The default maximum is the text config's
``max_position_embeddings`` (``llm_config`` for InternVL's remote-code config); a longer answer is
cut to fit, and ``--max-length`` past the limit is refused.
"""

from __future__ import annotations

from typing import Any

from qigbench.data.records import CalibrationDataError

#: config keys that state a model's position limit, in order of preference
_LIMIT_KEYS = ("max_position_embeddings", "max_sequence_length", "n_positions")


def _text_config(config: Any) -> Any:
    for name in ("text_config", "llm_config", "language_config"):
        sub = getattr(config, name, None)
        if sub is not None:
            return sub
    return config


def position_limit(config: Any) -> int | None:
    """The text model's ``max_position_embeddings`` (None when the config states no limit)."""
    text = _text_config(config)
    for key in _LIMIT_KEYS:
        value = text.get(key) if isinstance(text, dict) else getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def resolve_max_length(requested: int | None, limit: int | None, model: str) -> int | None:
    """``--max-length`` as given (refused past the model's limit), or the model's limit."""
    if requested is None:
        return limit
    if limit is not None and requested > limit:
        raise CalibrationDataError(
            f"--max-length {requested} is past {model}'s position limit: its text config has "
            f"max_position_embeddings={limit}, so longer samples would run on positions it was never trained on. "
            f"Use --max-length {limit} or less (or leave it out: the limit is the default)."
        )
    return requested
