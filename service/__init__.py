"""The digit-recognition HTTP service: FastAPI + onnxruntime. It never imports TensorFlow."""
