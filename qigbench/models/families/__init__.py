"""One module per architecture family; each exposes ``FAMILY: ModelFamily`` (pure data, no imports of transformers)."""
