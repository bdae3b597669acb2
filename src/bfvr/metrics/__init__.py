"""bfvr.metrics."""
