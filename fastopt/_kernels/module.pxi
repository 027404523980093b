# The body of every kernels module. Each SIMD variant (baseline.pyx, avx2.pyx, avx512.pyx) is
# this same source compiled with its own -march; fastopt._kernels chooses one at import.
"""Element-wise optimizer update kernels over tables of contiguous segments.

The segment table and the parallel driver (``segments.pxi``), the thread policy
(``threads.pxi``), element-wise pieces several rules share (``elementwise.pxi``), one chunk
function per update rule (``sgd.pxi``, ``adagrad.pxi``, ``rmsprop.pxi``, ``adam.pxi``,
``adadelta.pxi``, ``adamax.pxi``, ``nadam.pxi``), gradient norms and clipping (``norms.pxi``)
and the roofline probe (``probe.pxi``). Each rule's chunk function is a plain loop over one
piece of one segment, generic over float32/float64 through the fused type
``floating``; the driver splits a whole parameter group into pieces and hands them to OpenMP
threads in one parallel region. Per-step scalars arrive as C doubles, already computed by the
caller; the kernels do only the element-wise work, in the dtype of the buffers.
"""

cimport numpy as cnp

cnp.import_array()

include "platform.pxi"
include "threads.pxi"
include "segments.pxi"
include "elementwise.pxi"
include "sgd.pxi"
include "adagrad.pxi"
include "rmsprop.pxi"
include "adam.pxi"
include "adadelta.pxi"
include "adamax.pxi"
include "nadam.pxi"
include "norms.pxi"
include "probe.pxi"
