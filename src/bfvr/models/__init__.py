"""bfvr.models."""
