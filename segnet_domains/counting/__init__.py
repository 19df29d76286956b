"""Crowd counting: UCF-QNRF annotations, Gaussian density targets, the training task."""
