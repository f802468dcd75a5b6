"""The evaluation stages (rules/eval.smk, rules/genloss.smk): model ─sample─> samples ─grade─> grades ─score─>
metrics; SFT checkpoint + held-out split ─> generalization loss; SFT snapshots ─> loss (and accuracy) along SFT.

Modules: `sampling` (HF and vLLM backends, shards, resumable calls), `grading` (a samples table against its golds,
through `quagmire.verify_pool`), `metrics` (avg@n, pass@k, maj@n, bootstrap intervals), `genloss` (held-out loss),
`along_sft` (held-out loss and post-SFT accuracy of every SFT snapshot).
"""
