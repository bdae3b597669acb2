"""bfvr.data."""
