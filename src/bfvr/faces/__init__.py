"""bfvr.faces."""
