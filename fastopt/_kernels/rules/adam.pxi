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


cdef void adam_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """Adam on one piece; state = [exp_avg m, exp_avg_sq v, max_exp_avg_sq v̂ or NULL].

        g ← grad_scale·g;  p ← decay·p;  g ← g + λ p
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v̂ ← max(v̂, v)                                   (AMSGrad; v̂ replaces v below)
        p ← p − step_size · m / (√v / bias2_sqrt + ε)
    """
    cdef const adam_args* a = <const adam_args*>args
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating* v_max = state[2]
    cdef floating step_size = <floating>a.step_size, bias2_sqrt = <floating>a.bias2_sqrt
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating decay = <floating>a.decay, grad_scale = <floating>a.grad_scale
    cdef bint amsgrad = a.amsgrad
    cdef floating gi, pi, mi, vi
    cdef Py_ssize_t i
    for i in range(n):
        pi = decay * p[i]
        gi = with_l2(grad_scale * g[i], weight_decay, pi)
        mi = running_avg(m, i, gi, beta1, one_minus_beta1)
        vi = running_avg_sq(v, i, gi, beta2, one_minus_beta2)
        if amsgrad:
            # v̂ > v is false for a NaN v, so NaN propagates as with torch.maximum.
            vi = v_max[i] if v_max[i] > vi else vi
            v_max[i] = vi
        p[i] = pi - step_size * mi / (root(vi) / bias2_sqrt + eps)
