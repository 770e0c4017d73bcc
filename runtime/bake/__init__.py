"""Build time only: bake a model folder and export its ONNX graphs (needs torch)."""
