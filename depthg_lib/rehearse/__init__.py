"""Rehearse a paper profile at its scale on stand-ins, before anyone downloads the data.

    python -m depthg_lib.rehearse --profile cocostuff27-vits8 --scale 0.01 --out DIR
    python -m depthg_lib.rehearse --clean --out DIR

Stand-in data and weights of the real layout, sizes and shapes (`standin`), then the library's
own stages (`stages`), each in a child process that `runner` measures; compute a CPU cannot
finish at full scale runs on a sample and is projected (`project`). docs/scaling.md explains.
"""
