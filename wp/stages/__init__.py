"""One module per command (``wp.cli.COMMANDS``): ``add_arguments(parser)`` declares its options,
``main(args)`` runs it, and ``run(...)`` is the stage as a Python function (the tests call it). A
stage imports only the library, never another stage."""
