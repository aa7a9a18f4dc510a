"""Training of the project's own small models (the vision side of ``smollm2-llava``).

A layer above the evaluation harness: training draws its items from the task pack's renderers
and measures what it trained with the same harness the benchmark uses.
"""
