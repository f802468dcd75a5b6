"""The training stages (rules/models.smk, rules/sft.smk, rules/rl.smk): base model ─SFT─> sft/{recipe} ─GRPO─>
rl/{recipe}.

Modules: `runner` (one resumable runner: load, fingerprint, train, publish atomically), `sft` and `grpo` (what each
trainer adds: its dataset, its TRL trainer, its stats), `rewards` (the GRPO correctness reward), `launch` (one
process, or `accelerate launch` over several GPUs), `base_model` (a pinned hub snapshot or a local copy, checked).
"""
