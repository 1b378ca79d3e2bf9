"""Benchmarks: label efficiency of the query strategies (`asfda bench labels`), scoring cost (`bench speed`),
and the real anatomies they run on (`bench data`)."""
