"""The ``streaminfer`` command: the root group (main) and one module per command group."""
