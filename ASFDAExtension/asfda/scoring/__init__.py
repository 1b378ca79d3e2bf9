"""Scoring a datastore's pool: cases streamed through a DataLoader, per-case signals cached per model version."""
