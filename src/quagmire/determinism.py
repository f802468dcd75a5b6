"""Same results on any x86-64 CPU: pin the kernels that torch, MKL and oneDNN pick by instruction set.

Why: PyTorch's CPU wheel carries each kernel several times (plain, AVX2, AVX-512) and picks one per machine at its
first operation; MKL and oneDNN do the same. The variants sum in different orders, so a float differs in its last
bits, and a training run amplifies that into different weights, samples and verdicts: the embedded study gave
post-SFT 0.138 / post-RL 0.283 for random 2048 x 4 epochs on an AVX2-only AMD EPYC against 0.100 / 0.307 on an
AVX-512 one, while two runs on either machine agreed byte for byte. Measured here (a tiny Llama, 40 AdamW steps):
`ATEN_CPU_CAPABILITY` alone changes the weights (AVX-512 vs AVX2 vs plain); `MKL_CBWR` and `ONEDNN_MAX_CPU_ISA`
change nothing on AMD (MKL takes its AVX2 path there) but would on an Intel AVX-512 or AMX machine.

So every quagmire process asks for the AVX2 kernels, which every x86-64 server CPU since 2013-2015 has, before
torch runs its first operation (the choice is made then, not at import). A variable the user already exported
wins: `ATEN_CPU_CAPABILITY=avx512` gives the machine's fastest kernels and machine-specific results. On a CPU
without AVX2 torch falls back to its plain kernels, and results differ from the AVX2 ones. GPU kernels are not
affected by any of this (see the README, "Determinism").
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PORTABLE_CPU_KERNELS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own kernels (ATen): default / avx2 / avx512
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: one code path on every CPU with AVX2
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (mkldnn) kernels: no AVX-512 / AMX variants
}


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Ask for the portable kernels unless the environment already names others; return what is in force."""
    for name, value in PORTABLE_CPU_KERNELS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in PORTABLE_CPU_KERNELS}


def cpu_kernels() -> dict[str, str]:
    """What this process runs: the kernel variables and, if torch is loaded, the capability it chose."""
    import sys

    out = {name: os.environ.get(name, "") for name in PORTABLE_CPU_KERNELS}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    return out
