"""Latency, memory and export benchmarks of streamsam; results are committed under benchmarks/results/."""
