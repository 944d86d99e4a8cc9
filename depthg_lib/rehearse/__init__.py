"""Rehearse a paper profile at its scale on stand-ins (`standin`), the library's stages measured
(`stages`, `runner`) and projected to the full run (`project`); docs/scaling.md."""
