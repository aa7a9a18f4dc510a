"""AWQ: activation-aware scale search (20-point alpha grid) with optional weight-clip search.

Everything is the shared channel-wise-equalisation base with uniform token weights; AWQ proper
searches clipping too, so it is on by default here.
"""

from __future__ import annotations

from dataclasses import dataclass

from qigbench.bases.equalization import EqualizationConfig, EqualizationMethod


@dataclass(frozen=True)
class AWQConfig(EqualizationConfig):
    clip_search: bool = True


class AWQ(EqualizationMethod[AWQConfig]):
    name = "awq"
