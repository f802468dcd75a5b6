"""`python -m quagmire ...`: how every Snakemake job starts the CLI (see rules/common.smk), with or without an env.

In a local run the job forks from the warm-start server when one is up (`quagmire.warm_start`: the imports are
already done there); otherwise, or when it cannot be used, the CLI runs here, cold.
"""

import sys

from quagmire.warm_start import run_warm

code = run_warm(sys.argv[1:])
if code is None:
    from quagmire.cli import main

    code = main()
sys.exit(code)
