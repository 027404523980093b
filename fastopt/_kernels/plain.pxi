# The plain C OpenMP loops the benchmark compares fastopt's steps with (plain.h): the rule
# written as one `parallel for`, compiled here so that it gets the kernels' flags and -march.

cdef extern from "plain.h" nogil:
    ctypedef void (*plain_loop_f)(float**, Py_ssize_t, const double*, int)
    ctypedef void (*plain_loop_d)(double**, Py_ssize_t, const double*, int)
    ctypedef struct plain_entry:
        const char* name
        int arrays
        int scalars
        plain_loop_f single
        plain_loop_d twice
    const plain_entry* plain_find(const char* name)
    const plain_entry plain_loops[]
    const size_t plain_count

# Arrays each loop takes (parameter, gradient, states), by loop name.
PLAIN_ARRAYS = {plain_loops[k].name.decode(): plain_loops[k].arrays for k in range(plain_count)}


def plain_loop(str rule, list arrays, tuple scalars, int threads):
    """Run ``rule``'s plain loop (lower-case rule name, see plain.h) once over ``arrays`` =
    [parameter, gradient, state...] (C-contiguous, one dtype and length) with the step's
    ``scalars``, on ``threads`` threads."""
    cdef bytes key = rule.encode()
    cdef const plain_entry* entry = plain_find(key)
    cdef void* pointers[8]
    cdef double values[8]
    cdef Py_ssize_t n, k
    cdef cnp.ndarray a
    if entry == NULL:
        raise ValueError(f"no plain loop for {rule!r}")
    if len(arrays) != entry.arrays or len(scalars) != entry.scalars:
        raise ValueError(f"the plain {rule} loop takes {entry.arrays} arrays and "
                         f"{entry.scalars} scalars, got {len(arrays)} and {len(scalars)}")
    cdef cnp.ndarray first = arrays[0]
    cdef int typenum = cnp.PyArray_TYPE(first)
    if typenum not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64) or threads < 1:
        raise ValueError("plain loops take float32 or float64 arrays and threads >= 1")
    for k in range(entry.arrays):
        a = arrays[k]
        if cnp.PyArray_TYPE(a) != typenum or a.ndim != 1 or a.shape[0] != first.shape[0] or (
                not a.flags.c_contiguous or (k != 1 and not a.flags.writeable)):
            raise ValueError("plain loops take writeable C-contiguous 1-D arrays of one "
                             "dtype and length")
        pointers[k] = cnp.PyArray_DATA(a)
    for k in range(entry.scalars):
        values[k] = scalars[k]
    n = first.shape[0]
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            entry.single(<float**>pointers, n, values, threads)
        else:
            entry.twice(<double**>pointers, n, values, threads)
