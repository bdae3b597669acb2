"""bfvr.io."""
