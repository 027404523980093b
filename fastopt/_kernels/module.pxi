# The body of every kernels module. Each SIMD variant (baseline.pyx, avx2.pyx, avx512.pyx) is
# this same source compiled with its own -march; fastopt._kernels chooses one at import.
"""Optimizer update kernels over tables of contiguous segments.

The segment table and the driver (``segments.pxi``): pieces, one parallel region, a
deterministic reduction pass; the thread policy (``threads.pxi``); element-wise pieces several
rules share (``elementwise.pxi``); each rule's kernel (``rules/<name>.pxi``, gathered with
their glue in ``rules.pxi``, which setup.py generates); gradient norms and clipping
(``norms.pxi``), Adafactor's factored passes (``factored.pxi``), L-BFGS's passes over its
vectors (``vectors.pxi``), the roofline probe
(``probe.pxi``), the benchmark's plain loops (``plain.pxi``); storage types other than the
compute type, and rounding to bfloat16 for Muon's matrix products (``staging.pxi``), and the
loops that convert as they go where a rule has one (``direct.pxi``); which
arrays the kernels take and the 8-bit codes (``storage.pxi``); the memory guard (``guard.pxi``)
and the Python-facing segment table (``tables.pxi``). A rule's kernel is a plain loop over one
piece, generic over float32/float64 through the fused type ``floating``; its arguments arrive
as a C struct of doubles, already computed by the caller; the kernels do only the element-wise
work, in the dtype of the buffers.
"""

cimport numpy as cnp

cnp.import_array()

include "platform.pxi"
include "threads.pxi"
include "segments.pxi"
include "staging.pxi"
include "direct.pxi"
include "driver.pxi"
include "storage.pxi"
include "guard.pxi"
include "tables.pxi"
include "elementwise.pxi"
include "rules.pxi"
include "norms.pxi"
include "factored.pxi"
include "vectors.pxi"
include "probe.pxi"
include "plain.pxi"

# Storage type codes of SegmentTable, by NumPy dtype name, and its rounding modes.
DTYPE_CODES = {"float32": FLOAT32, "float64": FLOAT64, "bfloat16": BFLOAT16, "float16": FLOAT16}
# 8-bit state (uint8 codes), on the signed or the unsigned code.
Q8_CODES = {True: Q8_SIGNED, False: Q8_UNSIGNED}
BLOCK = STAGE  # elements per 8-bit block
ROUNDING = {"nearest": NEAREST, "stochastic": STOCHASTIC, "kahan": KAHAN}
