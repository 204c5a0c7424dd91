"""Pretrained weights mgc ships (musicnn's, with their licence) and the converter that made them without TensorFlow."""
