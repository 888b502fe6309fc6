"""Blocked-layout CPU convolution kernels: candidates, their cost model and selection.

``ConvProblem`` describes one conv; ``CANDIDATES`` lists the kernels in preference
order; ``choose`` picks one by the cost model. Layout conventions are in ``layout``.
"""
