# Adamax: Adam with the infinity norm in place of the second moment.

ctypedef struct adamax_args:
    double step_size      # lr / (1 − β₁ᵗ)
    double beta1
    double beta2
    double eps
    double weight_decay
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef inline floating nan_max(floating a, floating b) noexcept nogil:
    """max(a, b), NaN when either is NaN (torch.maximum and np.maximum propagate NaN; a bare
    comparison would drop a NaN a)."""
    # Both comparisons, combined bitwise: a short-circuit ``or`` compiles to a branch that
    # gcc does not turn into a select, and the loop around it stayed scalar.
    cdef bint take_a = (a > b) | (a != a)
    return a if take_a else b


cdef void adamax_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                       const void* args, const double* segment) noexcept nogil:
    """Adamax on one piece; state = [exp_avg m, exp_inf u].

        g ← grad_scale·g + λ p
        m ← β₁ m + (1 − β₁) g
        u ← max(β₂ u, |g| + ε)
        p ← p − step_size · m / u
    """
    cdef const adamax_args* a = <const adamax_args*>args
    cdef floating* m = state[0]
    cdef floating* u = state[1]
    cdef floating step_size = <floating>a.step_size
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating grad_scale = <floating>a.grad_scale
    cdef floating gi, mi, ui
    cdef Py_ssize_t i
    for i in range(n):
        gi = with_l2(grad_scale * g[i], weight_decay, p[i])
        mi = running_avg(m, i, gi, beta1, one_minus_beta1)
        ui = nan_max(beta2 * u[i], magnitude(gi) + eps)
        u[i] = ui
        p[i] = p[i] - step_size * mi / ui
