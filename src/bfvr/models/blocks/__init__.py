"""bfvr.models.blocks."""
