"""The paper's Table 6, the one copy every table, goal and benchmark reads."""

from __future__ import annotations

#: Table 6 of the paper: total calibration GPU-hours on one A800 80 GB (128 samples), per model and column
PAPER_TABLE6: dict[str, dict[str, float]] = {
    "internvl2-8b": {"mbq": 0.55, "leave_one_out": 2.07, "qig": 0.58},
    "internvl2-26b": {"mbq": 0.95, "leave_one_out": 4.20, "qig": 0.99},
}
PAPER_COLUMNS = (("mbq", "MBQ"), ("leave_one_out", "Leave-one-out"), ("qig", "Ours (QIG)"))


def paper_ratio_to_mbq(column: str, model: str = "internvl2-8b") -> float:
    """A Table 6 column over MBQ's, e.g. QIG 0.58 / 0.55 = 1.055 on InternVL2-8B."""
    row = PAPER_TABLE6[model]
    return row[column] / row["mbq"]
