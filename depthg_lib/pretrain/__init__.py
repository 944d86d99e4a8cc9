"""Training the embedded models that ship with the library.

`python -m depthg_lib.pretrain vit|depth --out DIR` trains the embedded ViT (self-supervised,
`vit.py`) or the embedded depth network (`depth.py`) on SynthScenes rendered with a seed
reserved for pretraining; `python -m depthg_lib.pretrain export vit|depth --out DIR` writes the
fp16 safetensors and the manifest entry that `depthg_lib.embedded` loads and checks.
"""
