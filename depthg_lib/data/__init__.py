"""Datasets: SynthScenes (the embedded default, `synthscenes`) and readers of the STEGO layout.

    reader = get_reader("cocostuff27", profile.paths.dataset_dir)
    reader.names("train"), reader.load_image("train", name), reader.load_label("train", name)
"""

from .readers import READERS, get_reader, reader_for_profile

__all__ = ["READERS", "get_reader", "reader_for_profile"]
