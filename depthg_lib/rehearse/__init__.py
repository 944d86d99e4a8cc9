"""Rehearse a paper profile at its scale on stand-ins, before anyone downloads the data.

    python -m depthg_lib.rehearse --profile cocostuff27-vits8 --scale 0.01 --out DIR
    python -m depthg_lib.rehearse --clean --out DIR

Stand-in data in the dataset's real tree, formats, image sizes and `round(F × N)` counts
(`standin`), stand-in backbone weights of the real architecture (`standin_models`), then the
library's own stages (`stages`), each in a child process whose wall time, CPU time, peak memory,
files and disk are recorded (`runner`); compute a CPU cannot finish at full scale runs on a
measured sample and is projected (`project`). docs/scaling.md has the measured rows.
"""
