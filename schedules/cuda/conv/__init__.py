"""CUDA convolution kernels: candidates, their cost model and selection."""
