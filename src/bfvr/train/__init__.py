"""bfvr.train."""
