# L-BFGS's passes over its vectors (fastopt.lbfgs): the two-loop recursion's rounds.
#
# A round of the recursion adds a multiple of one history vector to the direction, and the
# next round needs the dot product of the result with another: x ← x + α·y, then s·x. One pass
# over pieces does both, the piece of x still in cache for the dot product: 4 transfers of an
# element, where NumPy's multiply, subtract and dot take 7. Dot products are in double, in an
# order fixed by the length alone (pieces as factored.pxi's, lanes as norms.pxi's), so results
# are bitwise the same for any thread count and SIMD variant.

cdef double axpy_dot_piece(floating* x, const floating* y, const floating* s, floating alpha,
                           Py_ssize_t n) noexcept nogil:
    """x ← x + α·y over one piece (the product rounded: no fused multiply-add, as NumPy's
    ``x += α * y`` rounds it); returns s·x after (0 without s)."""
    cdef Py_ssize_t i
    if y != NULL:
        for i in range(n):
            x[i] = x[i] + alpha * y[i]
    if s == NULL:
        return 0.0
    return piece_dot(s, x, n)


cdef double axpy_dot_pass(floating* x, const floating* y, const floating* s, floating alpha,
                          Py_ssize_t n, double* partial) noexcept nogil:
    cdef Py_ssize_t k, start, pieces = (n + FACTOR_PIECE - 1) // FACTOR_PIECE
    cdef double total = 0.0
    if n >= serial_threshold and team_size() > 1:
        for k in prange(pieces, schedule="static", num_threads=team_size()):
            start = k * FACTOR_PIECE
            partial[k] = axpy_dot_piece(x + start, NULL if y == NULL else y + start,
                                        NULL if s == NULL else s + start, alpha,
                                        min(n - start, <Py_ssize_t>FACTOR_PIECE))
    else:
        for k in range(pieces):
            start = k * FACTOR_PIECE
            partial[k] = axpy_dot_piece(x + start, NULL if y == NULL else y + start,
                                        NULL if s == NULL else s + start, alpha,
                                        min(n - start, <Py_ssize_t>FACTOR_PIECE))
    for k in range(pieces):
        total += partial[k]
    return total


def axpy_dot(x, double alpha, y=None, s=None):
    """x ← x + α·y in place (α rounded to x's dtype, each product rounded in it), then the
    dot product s·x, returned in double (0.0 without ``s``); without ``y``, s·x alone. The
    arrays are C-contiguous, of one dtype (float32 or float64) and size; x is writable."""
    cdef Py_ssize_t n = x.size, pieces = (x.size + FACTOR_PIECE - 1) // FACTOR_PIECE
    cdef object dtype = x.dtype
    cdef char* xp = contiguous(x, "x", dtype, n)
    cdef char* yp = NULL if y is None else contiguous(y, "y", dtype, n, False)
    cdef char* sp = NULL if s is None else contiguous(s, "s", dtype, n, False)
    cdef double* partial
    cdef double total
    cdef bint single = dtype == np.float32
    if not single and dtype != np.float64:
        raise ValueError(f"x: expected float32 or float64, got {dtype}")
    partial = <double*>calloc(max(pieces, 1), sizeof(double))
    if partial == NULL:
        raise MemoryError()
    with nogil:
        if single:
            total = axpy_dot_pass(<float*>xp, <float*>yp, <float*>sp, <float>alpha, n, partial)
        else:
            total = axpy_dot_pass(<double*>xp, <double*>yp, <double*>sp, alpha, n, partial)
    free(partial)
    return total
