"""The QIG paper's own headline numbers, shown beside ours as a reference (never used by CI).

Source: the paper's Table 2 averages (VizWiz, MMMU, ChartQA, AI2D, ScienceQA; percent) and
Table 6 calibration GPU hours (one A800), as transcribed in ``reference/methods.md``; and the one
Q-VLM number a reproduction can check (``reference/q-vlm-and-tlq.md`` 1(f)). TLQ reports no
retrievable number: its claims are orderings (TLQ >= MBQ >= RTN), checked on our own runs. Our model
aliases map to the paper's models; tiny test models map to nothing.
"""

from __future__ import annotations

#: Our model aliases (and common HF ids) -> the paper's model name.
MODEL_ALIASES: dict[str, str] = {
    "qwen2vl": "Qwen2-VL-7B",
    "qwen2-vl-7b": "Qwen2-VL-7B",
    "qwen/qwen2-vl-7b-instruct": "Qwen2-VL-7B",
    "llava-ov": "LLaVA-OneVision-7B",
    "llava-onevision-7b": "LLaVA-OneVision-7B",
    "llava-hf/llava-onevision-qwen2-7b-ov-hf": "LLaVA-OneVision-7B",
    "internvl2": "InternVL2-8B",
    "internvl2-8b": "InternVL2-8B",
    "opengvlab/internvl2-8b": "InternVL2-8B",
    # Q-VLM's model (a checkpoint folder of this name, converted to the HF Llava format)
    "llava-v1.3-13b-sqa": "LLaVA-v1.3-13B-SQA",
    "liuhaotian/llava-lcs558k-scienceqa-vicuna-13b-v1.3": "LLaVA-v1.3-13B-SQA",
}

#: Our method names -> the paper's method key.
METHOD_ALIASES: dict[str, str] = {
    "fp16": "fp16",
    "rtn": "rtn",
    "gptq": "gptq",
    "awq": "awq",
    "sq": "sq",
    "smoothquant": "sq",
    "mbq": "mbq",
    "qig": "qig",
    "loo": "loo",
    "leave-one-out": "loo",
    "qvlm": "qvlm",
    "tlq": "tlq",
}

#: Table 2 averages: model -> format -> method -> average accuracy (%). FP16 is format-independent.
TABLE2_AVG: dict[str, dict[str, dict[str, float]]] = {
    "LLaVA-OneVision-7B": {
        "FP16": {"fp16": 73.37},
        "W3A16": {"rtn": 69.03, "gptq": 67.97, "awq": 67.15, "mbq": 70.44, "qig": 72.04},
        "W4A8": {"rtn": 68.78, "sq": 66.93, "mbq": 70.16, "qig": 70.23},
    },
    "InternVL2-8B": {
        "FP16": {"fp16": 74.31},
        "W3A16": {"rtn": 71.17, "gptq": 70.05, "awq": 70.70, "mbq": 72.20, "qig": 72.31},
        "W4A8": {"rtn": 70.80, "sq": 70.15, "mbq": 71.38, "qig": 72.04},
    },
    "Qwen2-VL-7B": {
        "FP16": {"fp16": 73.22},
        "W3A16": {"rtn": 68.14, "gptq": 69.00, "awq": 69.56, "mbq": 70.15, "qig": 70.30},
        "W4A8": {"rtn": 66.99, "sq": 63.46, "mbq": 67.48, "qig": 67.77},
    },
    # Not QIG's table: the Q-VLM paper's ScienceQA-test accuracy (quoted by its author, QVLM issue #9).
    # The Q-VLM setting suite measures ScienceQA alone, so its "average" is this one number.
    "LLaVA-v1.3-13B-SQA": {"W4A4": {"qvlm": 80.78}},
}

#: Table 6: calibration GPU hours on one A800.
TABLE6_GPU_HOURS: dict[str, dict[str, float]] = {
    "InternVL2-8B": {"mbq": 0.55, "loo": 2.07, "qig": 0.58},
    "InternVL2-26B": {"mbq": 0.95, "loo": 4.20, "qig": 0.99},
}


def paper_model(model: str) -> str | None:
    """The paper's model for one of our aliases, or ``None`` (tiny and unknown models)."""
    key = model.strip().lower()
    return MODEL_ALIASES.get(key) or MODEL_ALIASES.get(key.rstrip("/").rpartition("/")[2])


def paper_average(model: str, method: str, fmt: str, full_precision: bool = False) -> float | None:
    """Table 2 average accuracy (%) for our (model, method, format), if the paper reports it."""
    name = paper_model(model)
    key = METHOD_ALIASES.get(method.lower())
    if name is None or key is None:
        return None
    table = TABLE2_AVG[name]
    group = "FP16" if full_precision else fmt.upper()
    return table.get(group, {}).get(key)


def paper_gpu_hours(model: str, method: str) -> float | None:
    name = paper_model(model)
    key = METHOD_ALIASES.get(method.lower())
    if name is None or key is None:
        return None
    return TABLE6_GPU_HOURS.get(name, {}).get(key)
