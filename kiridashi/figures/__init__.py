"""The learned figure detector: synthetic training scenes, training, and the ONNX model's decoding.

``synth`` builds scenes (numpy / OpenCV), ``train`` trains and exports the net (needs the
``torch`` extra), ``decode`` turns the net's output maps into figure boxes (numpy, run time).
"""
