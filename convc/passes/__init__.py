"""Graph -> Graph rewrites that leave conv as the only heavy operator.

``PIPELINE`` lists the passes in the order they run; ``run_pipeline`` runs them all.
"""
from convc.passes.base import Pass
from convc.passes.pipeline import PIPELINE, run_pipeline

__all__ = ["Pass", "PIPELINE", "run_pipeline"]
