# Gradient norms and in-place scaling/clamping, for gradient clipping.
#
# A norm must not depend on the thread count or the SIMD width, so its summation order is
# fixed: each piece (PIECE elements of one segment, the same split whatever the threads) is
# reduced into LANES accumulators, element i into lane i % LANES, in double precision; the
# lanes, then the pieces of a segment, then the segments are combined in index order.

from libc.math cimport fabs, INFINITY

cdef enum:
    LANES = 8
    SQUARES = 0     # 2-norm: sum of squares
    ABSOLUTES = 1   # 1-norm: sum of absolute values
    MAXIMUM = 2     # inf-norm: largest absolute value (NaN if any element is NaN)


cdef inline double combine(double acc, double x, int kind) noexcept nogil:
    if kind == MAXIMUM:
        # acc > x is false when x is NaN, and NaN stays NaN once taken.
        return acc if acc > x or acc != acc else x
    return acc + x


cdef double piece_norm(const floating* g, Py_ssize_t n, int kind) noexcept nogil:
    cdef double lanes[LANES]
    cdef double x, total
    cdef Py_ssize_t i, j, block, blocks = n // LANES
    for j in range(LANES):
        lanes[j] = 0.0
    for block in range(blocks):
        for j in range(LANES):
            x = g[block * LANES + j]
            lanes[j] = combine(lanes[j], x * x if kind == SQUARES else fabs(x), kind)
    for i in range(blocks * LANES, n):
        x = g[i]
        j = i - blocks * LANES
        lanes[j] = combine(lanes[j], x * x if kind == SQUARES else fabs(x), kind)
    total = lanes[0]
    for j in range(1, LANES):
        total = combine(total, lanes[j], kind)
    return total


cdef void norm_pieces(Table* t, const char** source, int kind) noexcept nogil:
    cdef Py_ssize_t k, s, start, n
    cdef bint parallel = use_threads(t.total, &t.norm_policy)
    cdef double began = omp_get_wtime()
    for k in prange(t.npieces, schedule="static", use_threads_if=parallel):
        s = t.piece_seg[k]
        start = t.piece_start[k]
        n = t.length[s] - start
        if n > PIECE:
            n = PIECE
        if t.itemsize == 4:
            t.partial[k] = piece_norm(<const float*>(source[s] + start * 4), n, kind)
        else:
            t.partial[k] = piece_norm(<const double*>(source[s] + start * 8), n, kind)
    account(t.total, &t.norm_policy, parallel, began)


def accumulate_norm(SegmentTable table, int kind, bint of_grads, double total):
    """Fold the norm reduction of every segment, in order, into ``total``.

    Reduces the bound gradients if ``of_grads`` (call after ``bind_grads``), else the arrays
    the table was built over. Returns the sum (or maximum) before any root is taken.
    """
    cdef Py_ssize_t s, k = 0, end
    cdef double segment
    if of_grads and not table.bound:
        raise RuntimeError("bind_grads must precede a norm of the gradients")
    with nogil:
        norm_pieces(&table.t, table.t.grad if of_grads else <const char**>table.t.param, kind)
        for s in range(table.t.nseg):
            segment = 0.0
            end = k + (table.t.length[s] + PIECE - 1) // PIECE
            while k < end:
                segment = combine(segment, table.t.partial[k], kind)
                k += 1
            total = combine(total, segment, kind)
    return total


ctypedef struct ScaleArgs:
    double scale
    double clip       # clamp to [-clip, clip] when clamping


cdef void scale_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args) noexcept nogil:
    """p ← c · p"""
    cdef floating c = <floating>(<const ScaleArgs*>args).scale
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = c * p[i]


cdef void clamp_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args) noexcept nogil:
    """p ← min(max(p, −c), c); NaN stays NaN, as with torch.clamp."""
    cdef floating c = <floating>(<const ScaleArgs*>args).clip
    cdef floating x
    cdef Py_ssize_t i
    for i in range(n):
        x = p[i]
        x = -c if x < -c else x
        p[i] = c if x > c else x


def scale(SegmentTable table, double factor):
    """Multiply every element of the table's own arrays by ``factor``, in place."""
    cdef ScaleArgs a = ScaleArgs(factor, 0.0)
    table.bound = True  # reads nothing but the arrays the table was built over
    table.start_kernel(0)
    with nogil:
        drive(&table.t, scale_chunk[float], scale_chunk[double], &a)


def clamp(SegmentTable table, double clip):
    """Clamp every element of the table's own arrays to [-clip, clip], in place."""
    cdef ScaleArgs a = ScaleArgs(1.0, clip)
    table.bound = True
    table.start_kernel(0)
    with nogil:
        drive(&table.t, clamp_chunk[float], clamp_chunk[double], &a)
