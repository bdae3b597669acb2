"""bfvr.models.stc."""
