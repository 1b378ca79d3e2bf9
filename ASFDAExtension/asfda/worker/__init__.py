"""The local worker: a FastAPI service over one datastore with a single GPU job queue (see docs/worker.md)."""
