"""The lab: dipstop's experiments, on top of the library.

- `runs`: a run spec (image x sigma x seed under a protocol, with its criteria and averages)
  and recording one run with the library's recording loop
- `executor`: running a grid of specs in-process or as Ray tasks into a store
- `store`: the SQLite results store (unfinished runs resume from `dipstop.checkpoints`)
- `datasets`: folders of clean images, crops, reproducible synthetic noise
- `calibration`: the lam search on recorded runs (paper Sec. 3.2)
- `selection`: each method's stop on a stored run; `paper_report`: Table 1 and Figs. 1-4

Nothing in `dipstop` outside this package imports it, except the CLI.
"""
