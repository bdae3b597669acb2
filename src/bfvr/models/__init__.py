"""bfvr.models: the networks (one package per method) and the hub that maps names to them."""

#: the model `bfvr restore` (and every other front end) uses when none is named; kept here, not in
#: `bfvr.models.hub`, so the CLI can show it without importing torch
DEFAULT_MODEL = "bfvr-lite"
