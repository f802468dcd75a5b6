"""quagmire: does the post-SFT score predict the post-RL score? A reproducible SFT -> GRPO study."""

__version__ = "0.1.0"

from pathlib import Path

from quagmire.determinism import pin_cpu_kernels

REPO = Path(__file__).resolve().parents[2]  # the checkout: config/, the Snakefile and study files live here

pin_cpu_kernels()  # before torch's first operation, in every process that imports quagmire (quagmire.determinism)
