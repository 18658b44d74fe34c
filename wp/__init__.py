"""wp: bit-serial weight pools, reproduced as a cached workflow.

Stages (each one `python -m wp <command>` and one Snakemake rule):
prepare → pretrain → cluster → wp_train → table4.
"""

__version__ = "0.1.0"


class WPError(Exception):
    """A user-facing error: the message is one line naming the problem and the fix."""
