# ADOPT: Adam whose step normalises the gradient by the previous second moment, then averages.

ctypedef struct adopt_args:
    double lr
    double beta1
    double beta2
    double eps
    double clip           # c = tᵉ, the bound on the normalised gradient (when clipping)
    double weight_decay   # L2 coefficient; 0 for decoupled decay
    double decay          # 1 − lr · weight_decay (or 1 − weight_decay) when decoupled, else 1
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint first            # step 1: only the second moment starts
    bint clipping


cdef void adopt_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, const double* segment) noexcept nogil:
    """ADOPT on one piece; state = [exp_avg m, exp_avg_sq v].

        g ← grad_scale·g;  p ← decay·p;  g ← g + λ p
        step 1:      v ← v + g·g                 (m and p otherwise unchanged)
        afterwards:  u = g / max(√v, ε)          (v before this step's update)
                     u ← min(max(u, −c), c)      (when clipping)
                     m ← β₁ m + (1 − β₁) u
                     p ← p − γ m
                     v ← β₂ v + ((1 − β₂) g) g
    """
    cdef const adopt_args* a = <const adopt_args*>args
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating lr = <floating>a.lr, eps = <floating>a.eps, clip = <floating>a.clip
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating weight_decay = <floating>a.weight_decay, decay = <floating>a.decay
    cdef floating grad_scale = <floating>a.grad_scale
    cdef bint first = a.first, clipping = a.clipping
    cdef floating gi, pi, d, u, mi
    cdef Py_ssize_t i
    for i in range(n):
        pi = decay * p[i]
        gi = with_l2(grad_scale * g[i], weight_decay, pi)
        if first:
            v[i] = v[i] + gi * gi
            p[i] = pi
            continue
        # Each bound written so that NaN passes through, as torch.clamp lets it.
        d = root(v[i])
        d = eps if d < eps else d
        u = gi / d
        if clipping:
            u = -clip if u < -clip else u
            u = clip if u > clip else u
        mi = running_avg(m, i, u, beta1, one_minus_beta1)
        p[i] = pi - lr * mi
        running_avg_sq(v, i, gi, beta2, one_minus_beta2)
