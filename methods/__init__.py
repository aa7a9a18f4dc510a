"""Method plugins: one module per PTQ method, registered under the entry-point group
``qigbench.methods`` (see pyproject.toml). A method says only what differs from the engine."""
