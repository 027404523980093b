# Stub of fastopt._kernels.avx2: the same source as the baseline, compiled for another ISA.
from .baseline import *
