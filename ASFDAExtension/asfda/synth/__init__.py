"""Synthetic subjects from real anatomy: smooth deformations and realistic domain shifts."""
