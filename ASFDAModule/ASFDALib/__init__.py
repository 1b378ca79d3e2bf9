"""Slicer-side helpers of the ASFDA module.

Each file has one job and none imports torch or the ``asfda`` engine: all compute runs in the
worker process, so these helpers stay importable in any Slicer and in plain Python tests.
"""
