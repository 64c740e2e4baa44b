"""The ``formers`` command line."""
