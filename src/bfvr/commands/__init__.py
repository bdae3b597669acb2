"""One module per CLI subcommand; each exposes `register(app)`. Heavy imports go inside the command body."""
