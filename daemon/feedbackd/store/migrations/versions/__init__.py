"""The revisions, one file each, named ``NNNN_what.py`` with ``revision = "NNNN"`` (see the package docstring)."""
