"""The data stage (rules/data.smk, rules/data_hub.smk): raw sources ─filter─> clean + audit ─split─> held-out and
SFT pool ─subset─> SFT subsets; evaluation benchmarks normalized to one schema.

Modules: `spec` readers shared by training sources and benchmarks, `sources` (SFT and RL data), `benchmarks`
(evaluation sets), `text` (what counts as text, and the normalized forms dedup and decontamination compare),
`filters` (audited dedup, gold check, decontamination, length), `split` (the held-out split), `subsets` (the
paper's instance-level axis).
"""
