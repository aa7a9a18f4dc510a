"""Method bases: what GPTQ-style and channel-wise-equalisation methods share (the Hessian solve, the
per-group scale search), and the glue that binds a sensitivity provider to a scaling group.

A plugin in ``methods/`` subclasses one base and says only what differs; the engine (one block
loop) never imports from here.
"""
