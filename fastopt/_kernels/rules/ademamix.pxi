# AdEMAMix: Adam whose step mixes a fast and a slow exponential moving average of gradients.

ctypedef struct ademamix_args:
    double lr
    double bias1          # 1 − β₁ᵗ
    double bias2_sqrt     # √(1 − β₂ᵗ)
    double beta1
    double beta2
    double beta3          # β₃ₜ, the slow average's (scheduled) decay
    double alpha          # αₜ, the slow average's (scheduled) weight
    double eps
    double weight_decay   # L2 coefficient; 0 for decoupled decay
    double decay          # 1 − lr · weight_decay (or 1 − weight_decay) when decoupled, else 1
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef void ademamix_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                         const void* args, const double* segment) noexcept nogil:
    """AdEMAMix on one piece; state = [exp_avg m₁, exp_avg_sq v, exp_avg_slow m₂].

        g ← grad_scale·g;  p ← decay·p;  g ← g + λ p
        m₁ ← β₁ m₁ + (1 − β₁) g
        v ← β₂ v + ((1 − β₂) g) g
        m₂ ← β₃ₜ m₂ + (1 − β₃ₜ) g
        d = √v / √(1 − β₂ᵗ) + ε
        p ← p − (γ · (m₁ / (1 − β₁ᵗ) + αₜ m₂)) / d

    in that order of evaluation, as pytorch-optimizer's per-parameter AdEMAMix.
    """
    cdef const ademamix_args* a = <const ademamix_args*>args
    cdef floating* m1 = state[0]
    cdef floating* v = state[1]
    cdef floating* m2 = state[2]
    cdef floating lr = <floating>a.lr, bias1 = <floating>a.bias1
    cdef floating bias2_sqrt = <floating>a.bias2_sqrt, alpha = <floating>a.alpha
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2, beta3 = <floating>a.beta3
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating one_minus_beta3 = <floating>(1.0 - a.beta3)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating decay = <floating>a.decay, grad_scale = <floating>a.grad_scale
    cdef floating gi, pi, fast, vi, slow, d
    cdef Py_ssize_t i
    for i in range(n):
        pi = decay * p[i]
        gi = with_l2(grad_scale * g[i], weight_decay, pi)
        fast = running_avg(m1, i, gi, beta1, one_minus_beta1)
        vi = running_avg_sq(v, i, gi, beta2, one_minus_beta2)
        slow = running_avg(m2, i, gi, beta3, one_minus_beta3)
        d = root(vi) / bias2_sqrt + eps
        p[i] = pi - lr * (fast / bias1 + alpha * slow) / d
