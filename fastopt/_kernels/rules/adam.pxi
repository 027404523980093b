# Adam, AMSGrad and AdamW.

ctypedef struct adam_args:
    double step_size      # lr / (1 - beta1^t)
    double bias2_sqrt     # sqrt(1 - beta2^t)
    double beta1
    double beta2
    double eps
    double weight_decay   # L2 coefficient; 0 for decoupled decay
    double decay          # 1 - lr * weight_decay for decoupled decay, else 1
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint amsgrad


cdef inline floating adam_element(const adam_args* a, floating p, floating g, floating* m,
                                  floating* v, floating* v_max) noexcept nogil:
    """Adam on one element: its parameter and gradient in, its moments updated where they are
    (v_max only with AMSGrad), the new parameter returned.

        g ← grad_scale·g;  p ← decay·p;  g ← g + λ p
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v̂ ← max(v̂, v)                                   (AMSGrad; v̂ replaces v below)
        p ← p − step_size · m / (√v / bias2_sqrt + ε)
    """
    cdef floating mi, vi
    p = <floating>a.decay * p
    g = with_l2(<floating>a.grad_scale * g, <floating>a.weight_decay, p)
    mi = running_avg(m, 0, g, <floating>a.beta1, <floating>(1.0 - a.beta1))
    vi = running_avg_sq(v, 0, g, <floating>a.beta2, <floating>(1.0 - a.beta2))
    if a.amsgrad:
        # v̂ > v is false for a NaN v, so NaN propagates as with torch.maximum.
        vi = v_max[0] if v_max[0] > vi else vi
        v_max[0] = vi
    return p - <floating>a.step_size * mi / (root(vi) / <floating>a.bias2_sqrt + <floating>a.eps)


cdef void adam_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """Adam on one piece (adam_element); state = [exp_avg m, exp_avg_sq v, max_exp_avg_sq v̂
    or NULL]."""
    cdef adam_args a = (<const adam_args*>args)[0]  # a local copy: loop-invariant to the compiler
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating* v_max = state[2]
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = adam_element(&a, p[i], g[i], m + i, v + i, v_max + i)


# AMSGrad is a type of the direct loop rather than a flag: the branch on a flag the compiler
# turns into masked loads of v̂, and from NULL (no AMSGrad) each takes a microcode assist.
cdef struct with_max:
    char unused

cdef struct without_max:
    char unused

ctypedef fused max_role:
    with_max
    without_max


cdef inline void adam_direct_loop(pstore* p, const gstore* g, sstore** state, Py_ssize_t n,
                                  adam_args a, rounding how, uint32_t key, uint32_t first,
                                  max_role amsgrad) noexcept nogil:
    """adam_element over n elements in their storage types (direct.pxi)."""
    cdef sstore* m = state[0]
    cdef sstore* v = state[1]
    cdef sstore* v_max = state[2]
    cdef float mi, vi, vi_max = 0
    cdef Py_ssize_t i
    cdef uint32_t index = first  # a 32-bit count: the vectorised loop keeps it in 32-bit lanes
    a.amsgrad = max_role is with_max
    for i in range(n):
        mi = widen(m[i])
        vi = widen(v[i])
        if max_role is with_max:
            vi_max = widen(v_max[i])
        narrow_param(p + i, adam_element(&a, widen(p[i]), widen(g[i]), &mi, &vi, &vi_max),
                     how, key, index)
        index += 1
        narrow(m + i, mi)
        narrow(v + i, vi)
        if max_role is with_max:
            narrow(v_max + i, vi_max)


cdef void adam_direct(pstore* p, const gstore* g, sstore** state, Py_ssize_t n,
                      const adam_args* a, bint stochastic, uint32_t key,
                      uint32_t first) noexcept nogil:
    cdef with_max amsgrad
    cdef without_max adam
    cdef nearest_even nearest
    cdef stochastic_bits drawn
    if stochastic:
        if a.amsgrad:
            adam_direct_loop(p, g, state, n, a[0], drawn, key, first, amsgrad)
        else:
            adam_direct_loop(p, g, state, n, a[0], drawn, key, first, adam)
    elif a.amsgrad:
        adam_direct_loop(p, g, state, n, a[0], nearest, key, first, amsgrad)
    else:
        adam_direct_loop(p, g, state, n, a[0], nearest, key, first, adam)


cdef void adam_direct_piece(const Table* t, Py_ssize_t k, const void* args,
                            const double* segment) noexcept nogil:
    """Adam over piece k in the table's storage types (direct_fits)."""
    cdef char* p
    cdef const char* g
    cdef char* s[MAX_ROLES]
    cdef uint32_t key
    cdef Py_ssize_t n = direct_pointers(t, k, &p, &g, s, &key)
    cdef const adam_args* a = <const adam_args*>args
    cdef bint stochastic = t.rounding == STOCHASTIC, low_state = t.state_type[0] == BFLOAT16
    cdef uint32_t first = <uint32_t>t.pieces.start[k]
    if t.param_type == BFLOAT16:
        if low_state:
            adam_direct(<uint16_t*>p, <const uint16_t*>g, <uint16_t**>s, n, a, stochastic, key,
                        first)
        else:
            adam_direct(<uint16_t*>p, <const uint16_t*>g, <float**>s, n, a, stochastic, key, first)
    elif t.grad_type == BFLOAT16:
        if low_state:
            adam_direct(<float*>p, <const uint16_t*>g, <uint16_t**>s, n, a, stochastic, key, first)
        else:
            adam_direct(<float*>p, <const uint16_t*>g, <float**>s, n, a, stochastic, key, first)
    else:
        adam_direct(<float*>p, <const float*>g, <uint16_t**>s, n, a, stochastic, key, first)
