"""The embedded study only: a tiny arithmetic world that lets the whole DAG run on a laptop CPU, offline.

Modules: `problems` (problems, their difficulty and their terse/short/long worked solutions), `data` (disjoint
pools and benchmarks), `tokenizer` (a fast tokenizer: characters and the solutions' words), `model` (a tiny
Llama), `pretrain` (its pre-training). Nothing outside this package depends on it at paper scale.
"""
