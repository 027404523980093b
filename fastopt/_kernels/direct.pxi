# Direct loops: a rule's pass over a piece whose buffers are float32 or bfloat16, each
# element converted as it is read and rounded as it is written, in the one loop.
#
# Staging (staging.pxi) serves every storage type and rounding, but it converts each buffer
# into a float32 block in L1 and back, a store and a load per element and buffer more than
# converting in registers, and those passes, not memory, set its pace: Adam with bfloat16
# parameters and moments, which moves half float32's bytes, was slower than float32. A rule whose update of one element is a function of its own (``<name>_element``)
# can also define ``<name>_direct_piece``, a loop over the piece's elements in their storage
# types that calls it; setup.py finds it, and the driver runs it where :func:`direct_fits`.
# Each element's arithmetic and rounding is the staged path's, so results are bitwise the
# same: the tests compare both with the reference.

# Storage of the parameter, the gradient and the state roles: each float32 or bfloat16 (its
# bits), a specialisation per combination.
ctypedef fused pstore:
    float
    uint16_t

ctypedef fused gstore:
    float
    uint16_t

ctypedef fused sstore:
    float
    uint16_t

ctypedef fused half_or_float:
    float
    uint16_t

ctypedef void (*direct_f)(const Table* t, Py_ssize_t k, const void* args,
                          const double* segment) noexcept nogil


cdef inline float widen(half_or_float x) noexcept nogil:
    if half_or_float is float:
        return x
    else:
        return fastopt_from_bf16(x)


cdef inline void narrow(half_or_float* dst, float x) noexcept nogil:
    """x into state or a float32 parameter: bfloat16 rounded to nearest even."""
    if half_or_float is float:
        dst[0] = x
    else:
        dst[0] = fastopt_to_bf16(x)


# The parameter's rounding is a type of the loop rather than a flag: on a flag the compiler
# computes both roundings and picks one, and the random bits cost nearest a third of its time.
cdef struct nearest_even:
    char unused

cdef struct stochastic_bits:
    char unused

ctypedef fused rounding:
    nearest_even
    stochastic_bits


cdef inline void narrow_param(pstore* dst, float x, rounding how, uint32_t key,
                              uint32_t index) noexcept nogil:
    """x into a parameter, as staged_piece rounds it (element ``index`` of its parameter)."""
    if pstore is float:
        dst[0] = x
    elif rounding is stochastic_bits:
        dst[0] = fastopt_to_bf16_stochastic(x, fastopt_random(key, index))
    else:
        dst[0] = fastopt_to_bf16(x)


cdef bint direct_fits(const Table* t) noexcept nogil:
    """Whether a direct loop serves the table: float32 compute, every buffer in use float32
    or bfloat16 (a bfloat16 parameter with a bfloat16 gradient), the state roles all of one
    type, and the parameters rounded to nearest or stochastically (Kahan, float16 and 8-bit
    state are staged)."""
    cdef int r, state = -1
    if t.dtype != FLOAT32 or t.rounding == KAHAN:
        return False
    if not (t.param_type == FLOAT32 and (t.grad_type == FLOAT32 or t.grad_type == BFLOAT16)
            or t.param_type == BFLOAT16 and t.grad_type == BFLOAT16):
        return False
    for r in range(MAX_ROLES):
        if t.state[r * t.nseg] != NULL:
            if state == -1:
                state = t.state_type[r]
            elif t.state_type[r] != state:
                return False
    return state == FLOAT32 or state == BFLOAT16


cdef inline Py_ssize_t direct_pointers(const Table* t, Py_ssize_t k, char** param,
                                       const char** grad, char** state,
                                       uint32_t* key) noexcept nogil:
    """Where piece k starts in each buffer, at the buffer's own element size, and the key of
    its parameter's stochastic rounding stream; returns the piece's length."""
    cdef Py_ssize_t s = t.pieces.seg[k], start = t.pieces.start[k]
    cdef int r
    param[0] = t.param[s] + start * STORAGE_SIZE[t.param_type]
    grad[0] = t.grad[s] + t.pieces.grad[k] * STORAGE_SIZE[t.grad_type]
    for r in range(MAX_ROLES):
        state[r] = t.state[r * t.nseg + s]
        if state[r] != NULL:
            state[r] += start * STORAGE_SIZE[t.state_type[r]]
    key[0] = fastopt_stream_key(t.seed, t.step, t.parameter[s]) if t.rounding == STOCHASTIC else 0
    return t.pieces.length[k]
