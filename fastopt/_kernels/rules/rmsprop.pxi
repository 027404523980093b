# RMSprop, plain or centered, with optional momentum.

ctypedef struct rmsprop_args:
    double lr
    double alpha
    double eps
    double weight_decay
    double momentum       # 0: no buffer
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint centered


cdef inline void rmsprop_loop(floating* p, const floating* g, floating** state, Py_ssize_t n,
                              const rmsprop_args* a, bint centered) noexcept nogil:
    cdef floating* v = state[0]
    cdef floating* b = state[1]
    cdef floating* g_avg = state[2]
    cdef floating lr = <floating>a.lr, alpha = <floating>a.alpha
    cdef floating one_minus_alpha = <floating>(1.0 - a.alpha)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating momentum = <floating>a.momentum, grad_scale = <floating>a.grad_scale
    cdef bint heavy_ball = a.momentum > 0
    cdef floating gi, vi, ai, di, bi
    cdef Py_ssize_t i
    for i in range(n):
        gi = grad_scale * g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * p[i]
        vi = alpha * v[i] + one_minus_alpha * gi * gi
        v[i] = vi
        if centered:
            ai = alpha * g_avg[i] + one_minus_alpha * gi
            g_avg[i] = ai
            di = root(vi - ai * ai) + eps
        else:
            di = root(vi) + eps
        if heavy_ball:
            bi = momentum * b[i] + gi / di
            b[i] = bi
            p[i] = p[i] - lr * bi
        else:
            p[i] = p[i] - lr * gi / di


cdef void rmsprop_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                        const void* args, const double* segment) noexcept nogil:
    """RMSprop on one piece; state = [square_avg v, momentum_buffer b or NULL, grad_avg ḡ or NULL].

        g ← grad_scale·g + λ p
        v ← α v + (1 − α) g²
        d = √(v − ḡ²) + ε  with  ḡ ← α ḡ + (1 − α) g    (centered)
        d = √v + ε                                       (otherwise)
        b ← μ b + g / d;  p ← p − γ b                    (μ > 0)
        p ← p − γ g / d                                  (otherwise)
    """
    cdef const rmsprop_args* a = <const rmsprop_args*>args
    # A constant flag per call: GCC unswitches only so many invariant branches per loop, and
    # RMSprop has three; this one is resolved here so the loop still vectorises.
    if a.centered:
        rmsprop_loop(p, g, state, n, a, True)
    else:
        rmsprop_loop(p, g, state, n, a, False)
