"""CUDA schedules: conv kernels in ``conv``, every other PrimFunc scheduled here."""
