"""One module per workflow stage; each has a ``run(...)`` that the CLI and the tests call."""
