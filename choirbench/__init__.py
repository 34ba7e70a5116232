"""choirbench: a reproducibility benchmark for choir source separation.

Data flows one way: :mod:`choirbench.data_prep` -> :mod:`choirbench.methods`
-> :mod:`choirbench.evaluation`. No package imports a later stage.
"""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
"""Every method works at 16 kHz, the paper's rate."""
HOP = 256
"""F0 frames: one every 256 samples (16 ms) at 16 kHz."""
EXCERPT_SECONDS = 4.0
PARTS = ("S", "A", "T", "B")


class ChoirbenchError(Exception):
    """A problem with the user's input: printed as one clear line, exit code 2."""
