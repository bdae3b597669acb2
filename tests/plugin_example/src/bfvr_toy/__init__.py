"""bfvr-toy-method: a toy restoration method packaged as a bfvr plugin (see `bfvr_toy.method`)."""
