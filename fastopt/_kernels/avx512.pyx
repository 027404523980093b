# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# fastopt's kernels compiled for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL).
include "module.pxi"

VARIANT = "avx512"
