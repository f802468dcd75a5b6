"""The evaluation stages (rules/eval.smk, rules/genloss.smk): model ─sample─> samples ─grade─> grades ─score─>
metrics; SFT checkpoint + held-out split ─> generalization loss.

Modules: `sampling` (HF and vLLM backends, shards, resumable calls), `grading` (a samples table against its golds,
through `quagmire.verify_pool`), `metrics` (avg@n, pass@k, maj@n, bootstrap intervals), `genloss` (held-out loss).
"""
