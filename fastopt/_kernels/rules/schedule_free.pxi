# Schedule-Free AdamW and SGD (Defazio et al. 2024), as the schedulefree package steps them:
# the parameter holds y, the point gradients are taken at; z is the base sequence; the average
# x, which the model is evaluated at, is never stored: eval() and train() move the parameter
# between y and x (y = (1 − β₁) z + β₁ x).

ctypedef struct schedule_free_args:
    double lr             # γ, times the warm-up factor
    double ckp1           # c, this step's weight of z in the average
    double y_coef         # γ (β₁ (1 − c) − 1), in double as the package computes it
    double beta2
    double bias2          # 1 − β₂ᵏ⁺¹
    double eps
    double weight_decay   # λ, the decay taken at y
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    double weight         # the switch's weight: 1 − 1/β₁ to x (eval), 1 − β₁ to y (train)
    bint adaptive         # AdamW: g normalised by √(v / (1 − β₂ᵏ⁺¹)) + ε; SGD: g as it is
    bint first            # z starts as the parameter
    bint switch           # no step: the train/eval switch p ← lerp(p, z, weight)


cdef void schedule_free_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                              const void* args, const double* segment) noexcept nogil:
    """A schedule-free step on one piece; state = [z, exp_avg_sq v (AdamW) or NULL].

        g ← grad_scale·g;  z ← y  (first step)
        v ← β₂ v + (1 − β₂) g²;  u = g / (√(v / (1 − β₂ᵏ⁺¹)) + ε)     (AdamW; SGD: u = g)
        u ← u + λ y
        y ← lerp(y, z, c);  y ← y + γ (β₁ (1 − c) − 1) · u
        z ← z − γ u

    or, to switch modes, p ← lerp(p, z, weight).
    """
    cdef const schedule_free_args* a = <const schedule_free_args*>args
    cdef floating* z = state[0]
    cdef floating* v = state[1]
    cdef floating lr = <floating>a.lr, ckp1 = <floating>a.ckp1, y_coef = <floating>a.y_coef
    cdef floating beta2 = <floating>a.beta2, one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating bias2 = <floating>a.bias2, eps = <floating>a.eps
    cdef floating weight_decay = <floating>a.weight_decay, grad_scale = <floating>a.grad_scale
    cdef floating weight = <floating>a.weight, keep_start = 1 - weight
    cdef floating keep_y = 1 - ckp1
    cdef bint adaptive = a.adaptive, first = a.first
    cdef floating gi, yi, zi, ui, vi
    cdef Py_ssize_t i
    if a.switch:
        for i in range(n):
            p[i] = lerp(p[i], z[i], weight, keep_start)
        return
    for i in range(n):
        gi = grad_scale * g[i]
        yi = p[i]
        zi = yi if first else z[i]
        ui = gi
        if adaptive:
            vi = running_avg_sq(v, i, gi, beta2, one_minus_beta2)
            ui = gi / (root(vi / bias2) + eps)
        ui = with_l2(ui, weight_decay, yi)
        p[i] = lerp(yi, zi, ckp1, keep_y) + y_coef * ui
        z[i] = zi - lr * ui
