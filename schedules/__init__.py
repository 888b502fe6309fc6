"""Schedule templates, per target and algorithm."""
