# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# fastopt's kernels compiled for the x86-64 baseline (SSE2), or the target's default elsewhere.
include "module.pxi"

VARIANT = "baseline"
