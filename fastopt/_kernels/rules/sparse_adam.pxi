# SparseAdam: Adam's moments and update on the rows a row-sparse gradient touches only (the
# table's pieces are those rows: bind_row_addresses), as torch.optim.SparseAdam computes them.

ctypedef struct sparse_adam_args:
    double step_size      # γ √(1 − β₂ᵗ) / (1 − β₁ᵗ)
    double beta1
    double beta2
    double eps
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor


cdef void sparse_adam_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                            const void* args, const double* segment) noexcept nogil:
    """SparseAdam on one piece of touched rows; state = [exp_avg m, exp_avg_sq v].

        g ← grad_scale·g
        m ← m + (g − m)(1 − β₁)
        v ← v + (g² − v)(1 − β₂)
        p ← p + (−step_size) · (m / (√v + ε))

    in torch's order of evaluation (the increments of m and v added to their old values).
    """
    cdef const sparse_adam_args* a = <const sparse_adam_args*>args
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating neg_step_size = <floating>(-a.step_size)
    cdef floating one_minus_beta1 = <floating>(1.0 - a.beta1)
    cdef floating one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating eps = <floating>a.eps, grad_scale = <floating>a.grad_scale
    cdef floating gi, mi, vi
    cdef Py_ssize_t i
    for i in range(n):
        gi = grad_scale * g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] + neg_step_size * (mi / (root(vi) + eps))
