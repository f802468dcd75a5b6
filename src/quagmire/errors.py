"""The one exception type the project raises at its boundaries (config, input files, CLI arguments).

The CLI catches it and prints a single line with a non-zero exit, so a user sees
`config error: sft.lr must be a number (got "fast")` instead of a traceback.
"""

from __future__ import annotations


class QuagmireError(Exception):
    """A user-facing error: the message alone must tell the user what to fix."""
