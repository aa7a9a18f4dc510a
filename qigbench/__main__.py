"""``python -m qigbench ...`` (what ``torchrun --nproc-per-node N -m qigbench quantize ...`` runs)."""

import sys

from qigbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
