"""Durable benchmarks of dipstop, each run from the project root as
`python -m benchmarks.NAME` (benchmarks/README.md lists them); each saves its JSON record
under `results/benchmarks/` (results/MANIFEST.md). The drivers of the recorded grids and of
the lent GPU machine are in `studies/`."""
