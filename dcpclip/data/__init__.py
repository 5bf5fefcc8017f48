"""Datasets: the registry of COCO-Stuff and the six benchmarks, fetch, protocol-exact preparation,
torch datasets and transforms, and a generator of format-exact synthetic raw data."""
