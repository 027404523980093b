# The roofline probe: an optimizer's memory traffic with (almost) none of its arithmetic.
#
# probe(arrays) takes [parameter, gradient, state...] (1 to 4 state arrays), reads every array
# once and writes all but the gradient once, piece by piece in one parallel region, as a step
# does. A step moves the same bytes and does more arithmetic: it cannot be faster than this.
# With reads_first = k it first runs a reduction pass reading the first k arrays, as a rule
# with per-tensor norms does (LAMB, LARS): a pass that only reads costs about as much as one
# that reads the same arrays and writes some back in place (measured on a 2-core AMD EPYC, 4
# arrays of 10^7 float32: 0.96-1.14x), not its share of the bytes, so only the same passes
# are a limit for such a step.

cdef inline void probe_loop(floating* p, const floating* g, floating** s, Py_ssize_t n,
                            int nstate) noexcept nogil:
    # Called with a constant nstate, so each call is specialised and vectorised.
    cdef floating x
    cdef Py_ssize_t i
    for i in range(n):
        x = p[i] + g[i]
        if nstate > 0:
            x = x + s[0][i]
        if nstate > 1:
            x = x + s[1][i]
        if nstate > 2:
            x = x + s[2][i]
        if nstate > 3:
            x = x + s[3][i]
        p[i] = x
        if nstate > 0:
            s[0][i] = x
        if nstate > 1:
            s[1][i] = x
        if nstate > 2:
            s[2][i] = x
        if nstate > 3:
            s[3][i] = x


cdef void probe_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, const double* segment) noexcept nogil:
    """p, s₁…sₖ ← p + g + s₁ + … + sₖ: every array read once, all but g written once."""
    cdef int nstate = (<const int*>args)[0]
    if nstate == 1:
        probe_loop(p, g, state, n, 1)
    elif nstate == 2:
        probe_loop(p, g, state, n, 2)
    elif nstate == 3:
        probe_loop(p, g, state, n, 3)
    else:
        probe_loop(p, g, state, n, 4)


cdef enum:
    PROBE_LANES = 16  # independent sums, so that the reads, not the additions, set the pace


cdef inline floating probe_read(const floating* p, const floating* g, floating** s,
                                Py_ssize_t k, int reads) noexcept nogil:
    """p + g + s₁ + … at element k, over the first ``reads`` arrays."""
    cdef floating x = p[k]
    if reads > 1:
        x = x + g[k]
    if reads > 2:
        x = x + s[0][k]
    if reads > 3:
        x = x + s[1][k]
    if reads > 4:
        x = x + s[2][k]
    if reads > 5:
        x = x + s[3][k]
    return x


cdef inline double probe_sum(const floating* p, const floating* g, floating** s, Py_ssize_t n,
                             int reads) noexcept nogil:
    # Called with a constant reads, so each call is specialised and vectorised.
    cdef floating lanes[PROBE_LANES]
    cdef double total = 0.0
    cdef Py_ssize_t i, j, blocks = n // PROBE_LANES
    for j in range(PROBE_LANES):
        lanes[j] = 0
    for i in range(blocks):
        for j in range(PROBE_LANES):
            lanes[j] += probe_read(p, g, s, i * PROBE_LANES + j, reads)
    for i in range(blocks * PROBE_LANES, n):
        lanes[0] += probe_read(p, g, s, i, reads)
    for j in range(PROBE_LANES):
        total += lanes[j]
    return total


cdef void probe_reduce(const floating* p, const floating* g, floating** state, Py_ssize_t n,
                       const void* args, double* acc) noexcept nogil:
    """acc[0] += Σ (p + g + s₁ + …) over the first ``reads`` of the arrays: each read once."""
    cdef int reads = (<const int*>args)[1]
    if reads == 1:
        acc[0] += probe_sum(p, g, state, n, 1)
    elif reads == 2:
        acc[0] += probe_sum(p, g, state, n, 2)
    elif reads == 3:
        acc[0] += probe_sum(p, g, state, n, 3)
    elif reads == 4:
        acc[0] += probe_sum(p, g, state, n, 4)
    elif reads == 5:
        acc[0] += probe_sum(p, g, state, n, 5)
    else:
        acc[0] += probe_sum(p, g, state, n, 6)


def probe(list arrays, int reads_first=0):
    """Stream ``arrays`` = [parameter, gradient, state...] as a step would (see above), after
    a reduction pass over the first ``reads_first`` of them (0: none). Returns that pass's
    sum of their elements (0.0 without it)."""
    cdef int nstate = len(arrays) - 2
    cdef int args[2]
    cdef SegmentTable table
    if not 1 <= nstate <= MAX_ROLES:
        raise ValueError(f"probe takes a parameter, a gradient and 1 to {MAX_ROLES} states")
    if any(a.dtype != arrays[0].dtype or a.shape != arrays[0].shape
           or not a.flags.c_contiguous for a in arrays):
        raise ValueError("probe takes C-contiguous arrays of one shape and dtype")
    if not 0 <= reads_first <= len(arrays):
        raise ValueError(f"reads_first must be in [0, {len(arrays)}], got {reads_first}")
    args[0] = nstate
    args[1] = reads_first
    table = SegmentTable.of_arrays([arrays[0]])
    for role in range(nstate):
        table.set_state(role, [<uintptr_t>cnp.PyArray_DATA(<cnp.ndarray?>arrays[2 + role])])
    table.bind_grads(arrays, 1, MemoryGuard([]))
    table.start_kernel(0)
    table.t.policy.serial_seconds = -1.0  # measure the raw team: no contention fallback
    table.t.reduce_policy.serial_seconds = -1.0
    with nogil:
        if reads_first:
            reduce_pass(&table.t, probe_reduce[float], probe_reduce[double], args, 1, False)
        drive(&table.t, probe_chunk[float], probe_chunk[double], NULL, args, False)
    return table.t.segment[0] if reads_first else 0.0
