# The roofline probe: an optimizer's memory traffic with (almost) none of its arithmetic.
#
# probe(arrays, writes) reads every array once and writes the first ``writes`` of them once,
# piece by piece, as a step does; a step cannot be faster than this on the same machine.

ctypedef struct ProbeArgs:
    char* arrays[MAX_ROLES + 2]    # parameter, gradient and up to MAX_ROLES state arrays
    int reads
    int writes
    Py_ssize_t n
    Py_ssize_t itemsize


cdef void probe_piece(const ProbeArgs* a, Py_ssize_t start, Py_ssize_t n) noexcept nogil:
    # Sum the inputs into a piece-sized buffer in L1, then write it to the outputs: each array
    # crosses the memory bus once in each direction it must.
    cdef double total[PIECE]
    cdef Py_ssize_t i
    cdef int j
    cdef const float* src32
    cdef const double* src64
    for i in range(n):
        total[i] = 0.0
    for j in range(a.reads):
        if a.itemsize == 4:
            src32 = <const float*>a.arrays[j] + start
            for i in range(n):
                total[i] += src32[i]
        else:
            src64 = <const double*>a.arrays[j] + start
            for i in range(n):
                total[i] += src64[i]
    for j in range(a.writes):
        if a.itemsize == 4:
            for i in range(n):
                (<float*>a.arrays[j] + start)[i] = <float>(0.5 * total[i])
        else:
            for i in range(n):
                (<double*>a.arrays[j] + start)[i] = 0.5 * total[i]


def probe(list arrays, int writes):
    """Read all ``arrays`` (1-D, one dtype, one length) once and write the first ``writes``."""
    cdef ProbeArgs a
    cdef Py_ssize_t k, start, n, pieces
    cdef cnp.ndarray x
    if not 1 <= len(arrays) <= MAX_ROLES + 2 or not 0 <= writes <= len(arrays):
        raise ValueError(f"probe takes 1 to {MAX_ROLES + 2} arrays and at most that many writes")
    for j, obj in enumerate(arrays):
        x = <cnp.ndarray?>obj
        if (x.dtype != arrays[0].dtype or cnp.PyArray_SIZE(x) != cnp.PyArray_SIZE(arrays[0])
                or not cnp.PyArray_IS_C_CONTIGUOUS(x) or x.dtype.itemsize not in (4, 8)):
            raise ValueError("probe arrays must be contiguous float32/float64 of one length")
        a.arrays[j] = <char*>cnp.PyArray_DATA(x)
    a.reads = len(arrays)
    a.writes = writes
    a.n = cnp.PyArray_SIZE(arrays[0])
    a.itemsize = arrays[0].dtype.itemsize
    pieces = (a.n + PIECE - 1) // PIECE
    with nogil:
        for k in prange(pieces, schedule="static", use_threads_if=a.n >= serial_threshold):
            start = k * PIECE
            n = a.n - start
            if n > PIECE:
                n = PIECE
            probe_piece(&a, start, n)
