"""bfvr.engine."""
