# NAdam: Adam with Nesterov momentum and a momentum schedule (Dozat 2016), as torch.optim.NAdam.

ctypedef struct nadam_args:
    double grad_coef      # lr (1 − μₜ) / (1 − Πₜ)
    double avg_coef       # lr μₜ₊₁ / (1 − Πₜ μₜ₊₁)
    double bias2          # 1 − β₂ᵗ
    double beta1
    double beta2
    double eps
    double weight_decay   # L2 coefficient; 0 for decoupled decay
    double decay          # 1 − lr · weight_decay for decoupled decay, else 1
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef void nadam_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, const double* segment) noexcept nogil:
    """NAdam on one piece; state = [exp_avg m, exp_avg_sq v].

        g ← grad_scale·g;  p ← decay·p;  g ← g + λ p
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        d = √(v / bias2) + ε
        p ← p − grad_coef · g / d − avg_coef · m / d      (two roundings, as torch's two addcdiv)
    """
    cdef const nadam_args* a = <const nadam_args*>args
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating grad_coef = <floating>a.grad_coef, avg_coef = <floating>a.avg_coef
    cdef floating bias2 = <floating>a.bias2
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating decay = <floating>a.decay, grad_scale = <floating>a.grad_scale
    cdef floating gi, pi, mi, vi, di
    cdef Py_ssize_t i
    for i in range(n):
        pi = decay * p[i]
        gi = with_l2(grad_scale * g[i], weight_decay, pi)
        mi = running_avg(m, i, gi, beta1, one_minus_beta1)
        vi = running_avg_sq(v, i, gi, beta2, one_minus_beta2)
        di = root(vi / bias2) + eps
        pi = pi - grad_coef * gi / di
        p[i] = pi - avg_coef * mi / di
