"""`asfda demo`: the whole loop on real anatomy with a simulated annotator."""
