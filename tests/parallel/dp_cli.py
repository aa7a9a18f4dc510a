"""``qigbench`` under torchrun with a fault installed first (see ``dp_driver.install_fault``):

    QIGBENCH_TEST_FAULT=exit-after:0 torchrun --standalone --nproc-per-node 2 tests/parallel/dp_cli.py quantize ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dp_driver import install_fault

if __name__ == "__main__":
    from qigbench.cli import main

    if os.environ.get("QIGBENCH_TEST_FAULT"):
        install_fault(os.environ["QIGBENCH_TEST_FAULT"])
    sys.exit(main(sys.argv[1:]))
