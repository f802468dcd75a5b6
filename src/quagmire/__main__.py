"""`python -m quagmire ...`: how every Snakemake job starts the CLI (see rules/common.smk), with or without an env."""

import sys

from quagmire.cli import main

sys.exit(main())
