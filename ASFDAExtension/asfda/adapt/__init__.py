"""Selective semi-supervised fine-tuning: clinician labels plus reliable, masked pseudo-labels."""
