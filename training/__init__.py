"""Train the MNIST CNNs with Keras and export them to verified ONNX files."""
