# Adadelta: steps scaled by the ratio of running RMS of updates and of gradients.

ctypedef struct adadelta_args:
    double lr
    double rho
    double eps
    double weight_decay
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef void adadelta_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                         const void* args, const double* segment) noexcept nogil:
    """Adadelta on one piece; state = [square_avg v, acc_delta u].

        g ← grad_scale·g + λ p
        v ← ρ v + (1 − ρ) g²
        Δ = √(u + ε) / √(v + ε) · g
        u ← ρ u + (1 − ρ) Δ²
        p ← p − γ Δ
    """
    cdef const adadelta_args* a = <const adadelta_args*>args
    cdef floating* v = state[0]
    cdef floating* u = state[1]
    cdef floating lr = <floating>a.lr, rho = <floating>a.rho
    cdef floating one_minus_rho = <floating>(1.0 - a.rho)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating grad_scale = <floating>a.grad_scale
    cdef floating gi, vi, delta
    cdef Py_ssize_t i
    for i in range(n):
        gi = with_l2(grad_scale * g[i], weight_decay, p[i])
        vi = running_avg_sq(v, i, gi, rho, one_minus_rho)
        delta = root(u[i] + eps) / root(vi + eps) * gi
        running_avg_sq(u, i, delta, rho, one_minus_rho)
        p[i] = p[i] - lr * delta
