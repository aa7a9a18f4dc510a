"""Evaluation through the real harnesses (lmms-eval for VLMs, lm-eval for LMs), the offline task
pack, and fidelity metrics (KL divergence and top-1 flip rate against the full-precision model).

Heavy imports (lmms_eval, lm_eval) happen inside the submodules that need them, so importing
``qigbench.eval`` stays cheap.
"""
