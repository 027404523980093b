# ASGD: SGD with a decaying rate and a running average of the iterates (Polyak–Ruppert).

ctypedef struct asgd_args:
    double eta            # ηₜ₋₁: the step size the previous step left in the state
    double decay          # 1 − λ ηₜ₋₁ (λ: lambd)
    double mu             # μₜ₋₁: the averaging weight the previous step left in the state
    double weight_decay   # L2 coefficient
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint average          # μ ≠ 1: ax moves towards p by μ; else ax ← p


cdef void asgd_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """ASGD on one piece; state = [ax].

        g ← grad_scale·g;  g ← g + λ_wd p
        p ← p · (1 − λ η)
        p ← p − η g
        ax ← ax + (p − ax) μ     if μ ≠ 1,   else   ax ← p

    with η and μ the values the previous step stored, as torch's single-tensor ASGD.
    """
    cdef const asgd_args* a = <const asgd_args*>args
    cdef floating* ax = state[0]
    cdef floating eta = <floating>a.eta, decay = <floating>a.decay, mu = <floating>a.mu
    cdef floating weight_decay = <floating>a.weight_decay, grad_scale = <floating>a.grad_scale
    cdef bint average = a.average
    cdef floating gi, pi
    cdef Py_ssize_t i
    for i in range(n):
        gi = with_l2(grad_scale * g[i], weight_decay, p[i])
        pi = decay * p[i] - eta * gi
        p[i] = pi
        if average:
            ax[i] = ax[i] + (pi - ax[i]) * mu
        else:
            ax[i] = pi
