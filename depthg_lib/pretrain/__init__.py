"""Training the embedded models that ship with the library: `python -m depthg_lib.pretrain
vit|depth --out DIR` trains the ViT (`vit.py`) or the depth network (`depth.py`) on SynthScenes
rendered with a seed reserved for pretraining; `... export vit|depth --out DIR` writes the fp16
safetensors and the manifest entry that `depthg_lib.embedded` loads and checks."""
