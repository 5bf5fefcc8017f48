"""dcpclip: the DCP-CLIP model, its ablations, and the OVSS benchmark protocol, as a plain library.

The library takes typed dataclass configs and plain arguments; it never imports Hydra, Ray or DVC
(those live in `experiments/` and `ablations/`).
"""

__version__ = "0.1.0"
