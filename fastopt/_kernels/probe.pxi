# The roofline probe: an optimizer's memory traffic with (almost) none of its arithmetic.
#
# probe(arrays) takes [parameter, gradient, state...] (1 to 4 state arrays), reads every array
# once and writes all but the gradient once, piece by piece in one parallel region, as a step
# does. A step moves the same bytes and does more arithmetic: it cannot be faster than this.

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


def probe(list arrays):
    """Stream ``arrays`` = [parameter, gradient, state...] as a step would (see above)."""
    cdef int nstate = len(arrays) - 2
    cdef SegmentTable table
    if not 1 <= nstate <= MAX_ROLES:
        raise ValueError(f"probe takes a parameter, a gradient and 1 to {MAX_ROLES} states")
    if any(a.dtype != arrays[0].dtype or a.shape != arrays[0].shape
           or not a.flags.c_contiguous for a in arrays):
        raise ValueError("probe takes C-contiguous arrays of one shape and dtype")
    table = SegmentTable.of_arrays([arrays[0]])
    for role in range(nstate):
        table.set_state(role, [<uintptr_t>cnp.PyArray_DATA(<cnp.ndarray?>arrays[2 + role])])
    table.bind_grads(arrays, 1, MemoryGuard([]))
    table.start_kernel(0)
    table.t.policy.serial_seconds = -1.0  # measure the raw team: no contention fallback
    with nogil:
        drive(&table.t, probe_chunk[float], probe_chunk[double], NULL, &nstate, False)
