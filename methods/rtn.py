"""RTN: round-to-nearest in the run's format. No calibration data."""

from __future__ import annotations

from qigbench.engine.context import BlockContext
from qigbench.engine.method import Method, MethodConfig


class RTN(Method[MethodConfig]):
    name = "rtn"
    needs_calibration = False

    def quantize_block(self, ctx: BlockContext) -> None:
        ctx.rtn_()
