# Adafactor's passes over one tensor (fastopt.adafactor): factored second moments.
#
# A tensor of two or more dimensions is seen as ``batch`` matrices of rows × cols (its last two
# dimensions); one of fewer dimensions keeps a full second moment v instead. A step is three
# passes: the moments (Σ p², and the row and column sums of g², or v's update), Σ u² of the
# update u, and p ← decay·p + scale·u. Every sum is in double precision in an order fixed by
# the shape alone (fixed row chunks and pieces, lanes as in norms.pxi), so results are bitwise
# the same for any thread count and SIMD variant.

from libc.stdlib cimport calloc, free

import numpy as np

cdef enum:
    ROW_CHUNKS = 64              # row chunks per matrix in the moments pass (fewer if wide)
    CHUNK_DOUBLES = 1 << 21      # at most this many partial column sums (16 MiB)
    FACTOR_PIECE = 16384         # elements per piece of the element-wise passes
    U_CHUNK = 256                # updates held on the stack while their squares are summed


cdef inline floating adafactor_u(floating g, floating var, floating eps1_sq) noexcept nogil:
    """u = g / √max(var, ε₁²), as torch's clamp_(min=ε₁²).rsqrt_().mul_(g) rounds it (NaN
    stays NaN)."""
    if var < eps1_sq:
        var = eps1_sq
    return g * (1 / root(var))


cdef inline floating variance_at(const floating* v, const floating* col, floating row,
                                 floating mean, Py_ssize_t i) noexcept nogil:
    """The second moment's estimate at element i of a run: v[i], or (row·col[i])/mean as
    torch's (R @ C).div_(mean) rounds it."""
    if v != NULL:
        return v[i]
    return (row * col[i]) / mean


cdef double factored_row_piece(floating* p, const floating* g, Py_ssize_t n,
                               const floating* v, const floating* col, floating row,
                               floating mean, floating eps1_sq, bint apply, floating decay,
                               floating scale) noexcept nogil:
    """One run of ``n`` elements within a row (``v`` given: of the full second moment):
    returns Σ u², or (``apply``) stores p ← decay·p + scale·u. Each loop tests only
    loop-invariant flags, so that it vectorises."""
    cdef floating u[U_CHUNK]
    cdef double total = 0.0
    cdef Py_ssize_t i, start, count
    if apply:
        for i in range(n):
            p[i] = decay * p[i] + scale * adafactor_u(
                g[i], variance_at(v, col, row, mean, i), eps1_sq)
        return 0.0
    # u in chunks on the stack, each summed as a norm (norms.pxi's lanes): both loops vectorise
    start = 0
    while start < n:
        count = min(n - start, <Py_ssize_t>U_CHUNK)
        for i in range(count):
            u[i] = adafactor_u(g[start + i], variance_at(v, col, row, mean, start + i), eps1_sq)
        total += piece_norm(u, count, SQUARES)
        start += count
    return total


cdef double factored_piece(floating* p, const floating* g, Py_ssize_t start, Py_ssize_t stop,
                           const floating* v, const floating* rows, const floating* cols,
                           const floating* means, Py_ssize_t nrows, Py_ssize_t ncols,
                           floating eps1_sq, bint apply, floating decay,
                           floating scale) noexcept nogil:
    """Elements [start, stop) of the flat tensor, run by run within its rows."""
    cdef double total = 0.0
    cdef Py_ssize_t r, b, j, stop_run
    while start < stop:
        r = start // ncols
        j = start - r * ncols
        stop_run = min(stop, (r + 1) * ncols)
        b = r // nrows
        if v != NULL:
            total += factored_row_piece(p + start, g + start, stop_run - start, v + start,
                                        NULL, 0, 1, eps1_sq, apply, decay, scale)
        else:
            total += factored_row_piece(p + start, g + start, stop_run - start, NULL,
                                        cols + b * ncols + j, rows[r], means[b], eps1_sq,
                                        apply, decay, scale)
        start = stop_run
    return total


cdef double factored_pass(floating* p, const floating* g, Py_ssize_t n, const floating* v,
                          const floating* rows, const floating* cols, const floating* means,
                          Py_ssize_t nrows, Py_ssize_t ncols, floating eps1_sq, bint apply,
                          floating decay, floating scale, double* partial) noexcept nogil:
    """Σ u² over the ``n`` elements (pass 2), or their update (``apply``: pass 3), piece by
    piece of FACTOR_PIECE elements, in parallel from the serial threshold on; each piece's sum
    goes to ``partial`` and the pieces' sums are added in order."""
    cdef Py_ssize_t k, pieces = (n + FACTOR_PIECE - 1) // FACTOR_PIECE
    cdef double total = 0.0
    if n >= serial_threshold and team_size() > 1:
        for k in prange(pieces, schedule="static", num_threads=team_size()):
            partial[k] = factored_piece(p, g, k * FACTOR_PIECE, min(n, (k + 1) * FACTOR_PIECE),
                                        v, rows, cols, means, nrows, ncols, eps1_sq, apply,
                                        decay, scale)
    else:
        for k in range(pieces):
            partial[k] = factored_piece(p, g, k * FACTOR_PIECE, min(n, (k + 1) * FACTOR_PIECE),
                                        v, rows, cols, means, nrows, ncols, eps1_sq, apply,
                                        decay, scale)
    for k in range(pieces):
        total += partial[k]
    return total


cdef void moments_chunk(const floating* p, const floating* g, Py_ssize_t first,
                        Py_ssize_t last, Py_ssize_t ncols, double* row_sq, double* col_part,
                        double* p_sq) noexcept nogil:
    """Rows [first, last) of one matrix: each row's Σ g², its columns' Σ g² into
    ``col_part``, and Σ p² into ``p_sq``."""
    cdef Py_ssize_t i, j
    cdef double x
    for i in range(first, last):
        row_sq[i] = piece_norm(g + i * ncols, ncols, SQUARES)
        p_sq[0] += piece_norm(p + i * ncols, ncols, SQUARES)
        for j in range(ncols):
            x = g[i * ncols + j]
            col_part[j] += x * x


cdef double factored_moments(const floating* p, const floating* g, Py_ssize_t batch,
                             Py_ssize_t nrows, Py_ssize_t ncols, double* row_sq,
                             double* col_sq, double* parts) noexcept nogil:
    """Row sums of g² into ``row_sq`` (batch·rows), column sums into ``col_sq``
    (batch·cols); returns Σ p². ``parts``: batch·chunks·(cols + 1) zeroed doubles."""
    cdef Py_ssize_t chunks = chunks_per_matrix(batch, nrows, ncols)
    cdef Py_ssize_t w, b, k, j, matrix = nrows * ncols, width = ncols + 1
    cdef double total = 0.0
    if batch * matrix >= serial_threshold and team_size() > 1:
        for w in prange(batch * chunks, schedule="static", num_threads=team_size()):
            b = w // chunks
            k = w - b * chunks
            moments_chunk(p + b * matrix, g + b * matrix, k * nrows // chunks,
                          (k + 1) * nrows // chunks, ncols, row_sq + b * nrows,
                          parts + w * width + 1, parts + w * width)
    else:
        for w in range(batch * chunks):
            b = w // chunks
            k = w - b * chunks
            moments_chunk(p + b * matrix, g + b * matrix, k * nrows // chunks,
                          (k + 1) * nrows // chunks, ncols, row_sq + b * nrows,
                          parts + w * width + 1, parts + w * width)
    for b in range(batch):
        for j in range(ncols):
            col_sq[b * ncols + j] = 0.0
        for k in range(chunks):
            w = b * chunks + k
            total += parts[w * width]
            for j in range(ncols):
                col_sq[b * ncols + j] += parts[w * width + 1 + j]
    return total


cdef inline Py_ssize_t chunks_per_matrix(Py_ssize_t batch, Py_ssize_t nrows,
                                         Py_ssize_t ncols) noexcept nogil:
    """Row chunks per matrix: a function of the shape alone, so that the sums' order is."""
    cdef Py_ssize_t chunks = min(nrows, <Py_ssize_t>ROW_CHUNKS)
    chunks = min(chunks, CHUNK_DOUBLES // max(batch * (ncols + 1), 1))
    return max(chunks, 1)


cdef double vector_piece(const floating* p, const floating* g, floating* v, Py_ssize_t n,
                         floating weight, floating one_minus_weight) noexcept nogil:
    """v ← lerp(v, g², w) over one piece; returns its Σ p²."""
    cdef Py_ssize_t i
    cdef floating x
    for i in range(n):
        x = g[i]
        v[i] = lerp(v[i], x * x, weight, one_minus_weight)
    return piece_norm(p, n, SQUARES)


cdef double vector_moments(const floating* p, const floating* g, floating* v, Py_ssize_t n,
                           floating weight, floating one_minus_weight,
                           double* partial) noexcept nogil:
    """v ← lerp(v, g², w) element-wise; returns Σ p²."""
    cdef Py_ssize_t k, start, pieces = (n + FACTOR_PIECE - 1) // FACTOR_PIECE
    cdef double total = 0.0
    if n >= serial_threshold and team_size() > 1:
        for k in prange(pieces, schedule="static", num_threads=team_size()):
            start = k * FACTOR_PIECE
            partial[k] = vector_piece(p + start, g + start, v + start,
                                      min(n - start, <Py_ssize_t>FACTOR_PIECE), weight,
                                      one_minus_weight)
    else:
        for k in range(pieces):
            start = k * FACTOR_PIECE
            partial[k] = vector_piece(p + start, g + start, v + start,
                                      min(n - start, <Py_ssize_t>FACTOR_PIECE), weight,
                                      one_minus_weight)
    for k in range(pieces):
        total += partial[k]
    return total


cdef inline char* contiguous(object a, str name, object dtype, Py_ssize_t size,
                             bint writable=True) except NULL:
    cdef cnp.ndarray array = <cnp.ndarray?>a
    if array.dtype != dtype or not array.flags.c_contiguous or array.size != size:
        raise ValueError(f"{name}: expected a C-contiguous {dtype} array of {size} elements")
    if writable and not array.flags.writeable:
        raise ValueError(f"{name}: expected a writable array")
    return <char*>cnp.PyArray_DATA(array)


def adafactor_moments(p, grad, state, double weight, Py_ssize_t batch, Py_ssize_t nrows):
    """Adafactor's first pass over ``p`` and ``grad`` (C-contiguous, one dtype, float32 or
    float64). Factored (``state`` = (row_sq, col_sq), float64 arrays of batch·rows and
    batch·cols elements): fills them with the row and column sums of g² of each of the
    ``batch`` matrices of ``nrows`` rows. Full (``state`` = v, shaped as ``p``):
    v ← lerp(v, g², weight). Returns Σ p²."""
    cdef Py_ssize_t n = p.size, ncols, pieces = (p.size + FACTOR_PIECE - 1) // FACTOR_PIECE
    cdef object dtype = p.dtype
    cdef char* pp = contiguous(p, "param", dtype, n)
    cdef char* gp = contiguous(grad, "grad", dtype, n, False)
    cdef char* rows
    cdef char* cols
    cdef char* vp
    cdef double* parts
    cdef double total
    cdef bint single = dtype == np.float32
    if not single and dtype != np.float64:
        raise ValueError(f"param: expected float32 or float64, got {dtype}")
    if isinstance(state, tuple):
        ncols = n // max(batch * nrows, 1)
        if batch * nrows * ncols != n:
            raise ValueError(f"param: {n} elements are not {batch} matrices of {nrows} rows")
        rows = contiguous(state[0], "row_sq", np.float64, batch * nrows)
        cols = contiguous(state[1], "col_sq", np.float64, batch * ncols)
        parts = <double*>calloc(max(batch * chunks_per_matrix(batch, nrows, ncols)
                                    * (ncols + 1), 1), sizeof(double))
        if parts == NULL:
            raise MemoryError()
        with nogil:
            if single:
                total = factored_moments(<float*>pp, <float*>gp, batch, nrows, ncols,
                                         <double*>rows, <double*>cols, parts)
            else:
                total = factored_moments(<double*>pp, <double*>gp, batch, nrows, ncols,
                                         <double*>rows, <double*>cols, parts)
        free(parts)
        return total
    vp = contiguous(state, "variance", dtype, n)
    parts = <double*>calloc(max(pieces, 1), sizeof(double))
    if parts == NULL:
        raise MemoryError()
    with nogil:
        if single:
            total = vector_moments(<float*>pp, <float*>gp, <float*>vp, n, <float>weight,
                                   <float>(1.0 - <float>weight), parts)
        else:
            total = vector_moments(<double*>pp, <double*>gp, <double*>vp, n, weight,
                                   1.0 - weight, parts)
    free(parts)
    return total


def adafactor_update(p, grad, state, double eps1_sq, bint apply, double decay=1.0,
                     double scale=0.0):
    """Adafactor's update u = g / √max(var, ε₁²) over ``p`` and ``grad``, with var the full
    second moment (``state`` = v) or (row_var·col_var)/mean (``state`` = (row_var, col_var,
    mean), of batch·rows, batch·cols and batch elements in ``p``'s dtype). Returns Σ u²; or,
    when ``apply``, stores p ← decay·p + scale·u (each product rounded in ``p``'s dtype) and
    returns 0."""
    cdef Py_ssize_t n = p.size, batch, nrows, ncols
    cdef Py_ssize_t pieces = (n + FACTOR_PIECE - 1) // FACTOR_PIECE
    cdef object dtype = p.dtype
    cdef char* pp = contiguous(p, "param", dtype, n)
    cdef char* gp = contiguous(grad, "grad", dtype, n, False)
    cdef char* vp = NULL
    cdef char* rows = NULL
    cdef char* cols = NULL
    cdef char* means = NULL
    cdef double* partial
    cdef double total
    cdef bint single = dtype == np.float32
    if not single and dtype != np.float64:
        raise ValueError(f"param: expected float32 or float64, got {dtype}")
    if isinstance(state, tuple):
        batch = state[2].size
        nrows = state[0].size // max(batch, 1)
        ncols = state[1].size // max(batch, 1)
        if batch * nrows * ncols != n:
            raise ValueError(f"param: {n} elements are not {batch} matrices of "
                             f"{nrows} × {ncols}")
        rows = contiguous(state[0], "row_var", dtype, batch * nrows)
        cols = contiguous(state[1], "col_var", dtype, batch * ncols)
        means = contiguous(state[2], "mean", dtype, batch)
    else:
        vp = contiguous(state, "variance", dtype, n)
        nrows = ncols = max(n, 1)
    partial = <double*>calloc(max(pieces, 1), sizeof(double))
    if partial == NULL:
        raise MemoryError()
    with nogil:
        if single:
            total = factored_pass(<float*>pp, <float*>gp, n, <float*>vp, <float*>rows,
                                  <float*>cols, <float*>means, nrows, ncols, <float>eps1_sq,
                                  apply, <float>decay, <float>scale, partial)
        else:
            total = factored_pass(<double*>pp, <double*>gp, n, <double*>vp, <double*>rows,
                                  <double*>cols, <double*>means, nrows, ncols, eps1_sq,
                                  apply, decay, scale, partial)
    free(partial)
    return 0.0 if apply else total
