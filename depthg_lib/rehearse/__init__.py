"""Rehearse a paper profile at its scale on stand-ins, before anyone downloads the data
(`python -m depthg_lib.rehearse --profile P --scale F --out DIR`): stand-in data and weights
(`standin`), the library's own stages in measured child processes (`stages`, `runner`), and
the full run projected (`project`). docs/scaling.md explains."""
