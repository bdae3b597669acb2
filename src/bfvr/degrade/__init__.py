"""bfvr.degrade."""
