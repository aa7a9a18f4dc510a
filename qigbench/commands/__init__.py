"""One module per ``qigbench`` subcommand (see :mod:`qigbench.cli`)."""
