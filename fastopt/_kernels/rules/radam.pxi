# RAdam: Adam with its adaptive step rectified while the variance estimate is unreliable.

ctypedef struct radam_args:
    double lr
    double bias1          # 1 − β₁ᵗ
    double bias2_sqrt     # √(1 − β₂ᵗ)
    double rect           # r, the variance rectification (when rectified)
    double beta1
    double beta2
    double eps
    double weight_decay   # L2 coefficient; 0 for decoupled decay
    double decay          # 1 − lr · weight_decay for decoupled decay, else 1
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint rectified        # ρₜ > 5: the adaptive step, rectified; else plain momentum


cdef void radam_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, const double* segment) noexcept nogil:
    """RAdam on one piece; state = [exp_avg m, exp_avg_sq v].

        g ← grad_scale·g;  p ← decay·p;  g ← g + λ p
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        p ← p − ((((m / bias1) · γ) · (bias2_sqrt / (√v + ε))) · r)     (rectified)
        p ← p − (m / bias1) · γ                                          (otherwise)

    in that order of evaluation, as torch's single-tensor RAdam.
    """
    cdef const radam_args* a = <const radam_args*>args
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating lr = <floating>a.lr, bias1 = <floating>a.bias1
    cdef floating bias2_sqrt = <floating>a.bias2_sqrt, rect = <floating>a.rect
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating decay = <floating>a.decay, grad_scale = <floating>a.grad_scale
    cdef bint rectified = a.rectified
    cdef floating gi, pi, mi, vi, corrected
    cdef Py_ssize_t i
    for i in range(n):
        pi = decay * p[i]
        gi = with_l2(grad_scale * g[i], weight_decay, pi)
        mi = running_avg(m, i, gi, beta1, one_minus_beta1)
        vi = running_avg_sq(v, i, gi, beta2, one_minus_beta2)
        corrected = mi / bias1 * lr
        if rectified:
            p[i] = pi - corrected * (bias2_sqrt / (root(vi) + eps)) * rect
        else:
            p[i] = pi - corrected
