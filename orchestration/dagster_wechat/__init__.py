"""The Dagster code location of the sharded runs (``definitions.py``)."""
