# Lion: steps of the same size in every coordinate, by the sign of an interpolated momentum.

ctypedef struct lion_args:
    double lr
    double beta1
    double beta2
    double decay          # 1 − lr · weight_decay (applied at every step, as lion-pytorch)
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef void lion_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """Lion on one piece; state = [exp_avg m].

        g ← grad_scale·g;  p ← decay·p
        c = β₁ m + (1 − β₁) g
        p ← p − γ sign(c)                        (sign 0 for 0 and NaN, as torch)
        m ← β₂ m + (1 − β₂) g
    """
    cdef const lion_args* a = <const lion_args*>args
    cdef floating* m = state[0]
    cdef floating lr = <floating>a.lr, decay = <floating>a.decay
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating grad_scale = <floating>a.grad_scale
    cdef floating zero = 0
    cdef floating gi, c
    cdef Py_ssize_t i
    for i in range(n):
        gi = grad_scale * g[i]
        c = beta1 * m[i] + one_minus_beta1 * gi
        p[i] = decay * p[i] - lr * (<floating>(c > zero) - <floating>(c < zero))
        running_avg(m, i, gi, beta2, one_minus_beta2)
