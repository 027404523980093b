# Gradient norms (a reduction pass) and in-place scaling/clamping, for gradient clipping.
#
# A norm must not depend on the thread count or the SIMD width, so its summation order is
# fixed: the driver's reduction pass gives each piece (PIECE elements of one segment, the same
# split whatever the threads) its own partial result and combines them in order; within a
# piece, element i goes to accumulator i % LANES, in double precision, and the lanes are
# combined in index order.

from libc.math cimport fabs

cdef enum:
    LANES = 8
    SQUARES = 0     # 2-norm: sum of squares
    ABSOLUTES = 1   # 1-norm: sum of absolute values
    MAXIMUM = 2     # inf-norm: largest absolute value (NaN if any element is NaN)

ctypedef struct NormArgs:
    int kind
    bint of_grads     # the gradients' norm, else the norm of the table's own arrays


cdef double piece_dot(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """Σ a·b over one piece: element i into lane i % LANES, in double, lanes summed in order."""
    cdef double lanes[LANES]
    cdef double total
    cdef Py_ssize_t i, j, block, blocks = n // LANES
    for j in range(LANES):
        lanes[j] = 0.0
    for block in range(blocks):
        for j in range(LANES):
            lanes[j] += <double>a[block * LANES + j] * <double>b[block * LANES + j]
    for i in range(blocks * LANES, n):
        lanes[i - blocks * LANES] += <double>a[i] * <double>b[i]
    total = lanes[0]
    for j in range(1, LANES):
        total += lanes[j]
    return total


cdef double piece_norm(const floating* x, Py_ssize_t n, int kind) noexcept nogil:
    cdef double lanes[LANES]
    cdef double total
    cdef bint maximum = kind == MAXIMUM
    cdef Py_ssize_t i, j, block, blocks = n // LANES
    if kind == SQUARES:
        return piece_dot(x, x, n)
    for j in range(LANES):
        lanes[j] = 0.0
    for block in range(blocks):
        for j in range(LANES):
            lanes[j] = combine(lanes[j], fabs(x[block * LANES + j]), maximum)
    for i in range(blocks * LANES, n):
        lanes[i - blocks * LANES] = combine(lanes[i - blocks * LANES], fabs(x[i]), maximum)
    total = lanes[0]
    for j in range(1, LANES):
        total = combine(total, lanes[j], maximum)
    return total


cdef void norm_reduce(const floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, double* acc) noexcept nogil:
    """acc[0] = Σ x², Σ |x| or max |x| over the piece, x the gradient or the array itself."""
    cdef const NormArgs* a = <const NormArgs*>args
    acc[0] = piece_norm(g if a.of_grads else p, n, a.kind)


def accumulate_norm(SegmentTable table, int kind, bint of_grads, double total):
    """Fold the norm reduction of every segment, in order, into ``total``.

    Reduces the bound gradients if ``of_grads`` (call after binding them), else the arrays the
    table was built over. Returns the sum (or maximum) before any root is taken.
    """
    cdef NormArgs a = NormArgs(kind, of_grads)
    cdef Py_ssize_t s
    cdef bint maximum = kind == MAXIMUM
    if of_grads and not table.bound:
        raise RuntimeError("gradients must be bound before their norm is taken")
    if not of_grads:  # the arrays' own norm: whatever the gradients were, they are the arrays
        for s in range(table.t.nseg):
            table.t.grad[s] = table.t.param[s]
        table.t.grad_type = table.t.param_type
        table.t.pieces = &table.t.dense
    table.find_native()
    with nogil:
        reduce_pass(&table.t, norm_reduce[float], norm_reduce[double], &a, 1, maximum)
        for s in range(table.t.nseg):
            total = combine(total, table.t.segment[s * MAX_REDUCED], maximum)
    return total


ctypedef struct ScaleArgs:
    double scale
    double clip       # clamp to [-clip, clip] when clamping


cdef void scale_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, const double* segment) noexcept nogil:
    """p ← c · p"""
    cdef floating c = <floating>(<const ScaleArgs*>args).scale
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = c * p[i]


cdef void clamp_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, const double* segment) noexcept nogil:
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
    table.bind_self()
    table.start_kernel(0)
    with nogil:
        drive(&table.t, scale_chunk[float], scale_chunk[double], NULL, &a, False)


def clamp(SegmentTable table, double clip):
    """Clamp every element of the table's own arrays to [-clip, clip], in place."""
    cdef ScaleArgs a = ScaleArgs(1.0, clip)
    table.bind_self()
    table.start_kernel(0)
    with nogil:
        drive(&table.t, clamp_chunk[float], clamp_chunk[double], NULL, &a, False)
