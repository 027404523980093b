# The driver: a rule's passes over every piece of a table, in one parallel region.

cdef inline void run_piece(const Table* t, Py_ssize_t k, chunk_f32 f32, chunk_f64 f64,
                           direct_f direct, const void* args, bint with_segments) noexcept nogil:
    # A function of its own: its locals are private to the thread that runs the piece.
    cdef Py_ssize_t n
    cdef char* param
    cdef const char* grad
    cdef char* state[MAX_ROLES]
    cdef const double* segment = NULL
    if with_segments:
        segment = t.segment + t.pieces.seg[k] * MAX_REDUCED
    if not t.native:
        if direct != NULL:
            direct(t, k, args, segment)
        else:
            staged_piece(t, k, f32, args, segment)
        return
    piece_pointers(t, k, &param, &grad, state, &n)
    if t.dtype == FLOAT32:
        f32(<float*>param, <const float*>grad, <float**>state, n, args, segment)
    else:
        f64(<double*>param, <const double*>grad, <double**>state, n, args, segment)


cdef inline void reduce_piece(Table* t, Py_ssize_t k, reduce_f32 f32, reduce_f64 f64,
                              const void* args) noexcept nogil:
    cdef Py_ssize_t n, j
    cdef char* param
    cdef const char* grad
    cdef char* state[MAX_ROLES]
    cdef double* acc = t.pieces.partial + k * MAX_REDUCED
    for j in range(MAX_REDUCED):
        acc[j] = 0.0
    if not t.native:
        staged_reduce_piece(t, k, f32, args, acc)
        return
    piece_pointers(t, k, &param, &grad, state, &n)
    if t.dtype == FLOAT32:
        f32(<const float*>param, <const float*>grad, <float**>state, n, args, acc)
    else:
        f64(<const double*>param, <const double*>grad, <double**>state, n, args, acc)


cdef void drive(Table* t, chunk_f32 f32, chunk_f64 f64, direct_f direct, const void* args,
                bint with_segments) noexcept nogil:
    """Apply one rule's element-wise pass to every element of the table: one parallel region,
    static schedule, unless the table is small or the machine is contended (threads.pxi).
    Buffers not all of the compute type go through the rule's direct loop where it has one
    that serves them (direct.pxi), else through staging (staging.pxi)."""
    cdef Py_ssize_t k, total = t.pieces.total
    cdef bint parallel = use_threads(total, &t.policy)
    cdef double start = omp_get_wtime() if total >= serial_threshold else 0.0
    if t.native or not direct_fits(t):
        direct = NULL
    if parallel:
        for k in prange(t.pieces.count, schedule="static", num_threads=team_size()):
            if k == 0:
                fastopt_note_team_size()
            run_piece(t, k, f32, f64, direct, args, with_segments)
    else:  # no OpenMP region at all: entering even a one-thread one costs a microsecond
        fastopt_note_team_size()
        for k in range(t.pieces.count):
            run_piece(t, k, f32, f64, direct, args, with_segments)
    account(total, &t.policy, parallel, start)


cdef inline double combine(double acc, double x, bint maximum) noexcept nogil:
    """acc + x, or max(acc, x) where NaN, once met, stays."""
    if maximum:
        return acc if acc > x or acc != acc else x
    return acc + x


cdef void reduce_pass(Table* t, reduce_f32 f32, reduce_f64 f64, const void* args,
                      int reduced, bint maximum) noexcept nogil:
    """A rule's first pass: each piece reduced into its own partial results (the same split
    whatever the thread count), then the pieces of each segment combined in order (added, or
    their maximum taken), so the result is bitwise the same for any number of threads."""
    cdef Py_ssize_t k, total = t.pieces.total
    cdef bint parallel = use_threads(total, &t.reduce_policy)
    cdef double start = omp_get_wtime() if total >= serial_threshold else 0.0
    if parallel:
        for k in prange(t.pieces.count, schedule="static", num_threads=team_size()):
            reduce_piece(t, k, f32, f64, args)
    else:
        for k in range(t.pieces.count):
            reduce_piece(t, k, f32, f64, args)
    account(total, &t.reduce_policy, parallel, start)
    combine_pieces(t, reduced, maximum)


cdef void combine_pieces(Table* t, int reduced, bint maximum) noexcept nogil:
    """Each segment's values: its pieces' partial results combined in piece order."""
    cdef Py_ssize_t k, s, j
    cdef const Pieces* pieces = t.pieces
    for s in range(t.nseg * MAX_REDUCED):
        t.segment[s] = 0.0
    for k in range(pieces.count):
        s = pieces.seg[k]
        for j in range(reduced):
            t.segment[s * MAX_REDUCED + j] = combine(t.segment[s * MAX_REDUCED + j],
                                                     pieces.partial[k * MAX_REDUCED + j], maximum)
