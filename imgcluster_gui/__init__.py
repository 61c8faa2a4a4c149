"""imgcluster: sort a folder of images into groups nobody labelled."""

__version__ = "0.1.0"
