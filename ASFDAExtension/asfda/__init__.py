"""ASFDA engine: datastore, models, DKD/ASD ranking and selective semi-supervised adaptation."""

__version__ = "0.1.0"
