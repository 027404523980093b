# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# fastopt's kernels compiled for x86-64-v3 (AVX2, FMA, BMI2).
include "module.pxi"

VARIANT = "avx2"
