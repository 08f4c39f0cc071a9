"""How task networks run: TFLite, onnxruntime graphs as torch modules, torchvision without downloads."""
