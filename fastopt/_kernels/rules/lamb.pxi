# LAMB: Adam's direction, each tensor's step scaled by its trust ratio ‖p‖ / ‖u‖.
#
# The two passes. The trust ratio needs ‖u‖, and u is made from the NEW moments, so the
# reduction pass computes the new m and v too, without storing them (it may only read), and
# the update pass computes them again, with the same inline function, and stores them. With
# -ffp-contract=off both passes round every operation alike, so the moments the update stores
# and the u it applies are bitwise those whose norm was taken. The other sound split, storing
# the moments in a first element-wise pass and reading them back in a second, writes m and v
# twice; recomputing costs the same reads and no extra writes.
#
# The norms. Each piece's sums go, element i to lane i % TRUST_LANES, into double
# accumulators, combined in lane order; the driver adds the pieces of a segment in order. The
# result is the same bits for every thread count and SIMD variant (the lanes, not the
# elements, are what the vector units run side by side), and fastopt.reference.trust
# reproduces it. lars.pxi uses the lane helpers below (rules.pxi includes the kernels in
# alphabetical order).

cdef enum:
    TRUST_LANES = 16


cdef inline void add_squares(double* first, double* second, Py_ssize_t j, floating x,
                             floating y) noexcept nogil:
    """Lane j of each sum takes the square of its element, squared in double."""
    first[j] += <double>x * <double>x
    second[j] += <double>y * <double>y


cdef inline double lane_total(const double* lanes) noexcept nogil:
    """The lanes added in index order: the piece's sum."""
    cdef double total = lanes[0]
    cdef Py_ssize_t j
    for j in range(1, TRUST_LANES):
        total = total + lanes[j]
    return total


ctypedef struct lamb_args:
    double step_size      # γ / (1 − β₁ᵗ), times RAdam's rectification r with rectify
    double beta1
    double beta3          # 1 − β₁ with grad_averaging, else 1
    double beta2
    double eps
    double weight_decay   # L2 coefficient added to u; 0 when decoupled or rectified
    double decay          # 1 − γ λ (1 − λ with fixed_decay) when decoupled, else 1
    double max_weight_norm  # ‖p‖ is clamped to this (pytorch-optimizer's Lamb.clamp)
    double grad_scale     # g is read as grad_scale·g: −1 to maximize, times a clipping factor
    bint adaptive         # u = m / (√v + ε); else u = m (rectify's SGD steps)
    bint rectified_norm   # the norm taken is of p − s·u (the oracle's rectify), else of u
    bint trust            # scale by the trust ratio (False: adam=True, or no update)
    bint update           # False: rectify's steps before the threshold (p is only decayed)


cdef inline floating lamb_direction(floating pi, floating gi, floating* m, floating* v,
                                    Py_ssize_t i, floating beta1, floating beta3,
                                    floating beta2, floating one_minus_beta2, floating eps,
                                    floating weight_decay, bint adaptive,
                                    bint store) noexcept nogil:
    """u for element i of the (already decayed) parameter pi, from the new moments, which
    are stored only when ``store``: the only arithmetic both passes run."""
    cdef floating mi = beta1 * m[i] + beta3 * gi
    cdef floating vi = beta2 * v[i] + one_minus_beta2 * gi * gi
    cdef floating ui = mi
    if store:
        m[i] = mi
        v[i] = vi
    if adaptive:
        ui = mi / (root(vi) + eps)
    return with_l2(ui, weight_decay, pi)


cdef double lamb_ratio(const lamb_args* a, const double* segment) noexcept nogil:
    """The segment's trust ratio from its sums Σ p², Σ w² (w: the vector normed):
    φ = min(‖p‖, max_weight_norm); 1 if φ = 0 or ‖w‖ = 0, else φ / (‖w‖ + ε)."""
    cdef double weight_norm, update_norm
    if not a.trust:
        return 1.0
    weight_norm = sqrt(segment[0])
    if weight_norm > a.max_weight_norm:  # so written, a NaN norm stays NaN, as torch.clamp
        weight_norm = a.max_weight_norm
    update_norm = sqrt(segment[1])
    if weight_norm == 0 or update_norm == 0:
        return 1.0
    return weight_norm / (update_norm + a.eps)


cdef void lamb_reduce(const floating* p, const floating* g, floating** state, Py_ssize_t n,
                      const void* args, double* acc) noexcept nogil:
    """acc[0] += Σ p², acc[1] += Σ w² over the piece: p decayed, w = u, or p − s·u with
    rectify (both in double, lane by lane)."""
    cdef const lamb_args* a = <const lamb_args*>args
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating beta1 = <floating>a.beta1, beta3 = <floating>a.beta3
    cdef floating beta2 = <floating>a.beta2, one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating decay = <floating>a.decay, grad_scale = <floating>a.grad_scale
    cdef floating step_size = <floating>a.step_size
    cdef bint adaptive = a.adaptive, rectified_norm = a.rectified_norm
    cdef double weights[TRUST_LANES]
    cdef double updates[TRUST_LANES]
    cdef floating pi, ui
    cdef Py_ssize_t i, j, blocks = n // TRUST_LANES
    if not a.trust:
        return
    for j in range(TRUST_LANES):
        weights[j] = 0.0
        updates[j] = 0.0
    for i in range(blocks):
        for j in range(TRUST_LANES):
            pi = decay * p[i * TRUST_LANES + j]
            ui = lamb_direction(pi, grad_scale * g[i * TRUST_LANES + j], m, v,
                                i * TRUST_LANES + j, beta1, beta3, beta2, one_minus_beta2, eps,
                                weight_decay, adaptive, False)
            add_squares(weights, updates, j, pi, pi - step_size * ui if rectified_norm else ui)
    for i in range(blocks * TRUST_LANES, n):
        pi = decay * p[i]
        ui = lamb_direction(pi, grad_scale * g[i], m, v, i, beta1, beta3, beta2,
                            one_minus_beta2, eps, weight_decay, adaptive, False)
        add_squares(weights, updates, i - blocks * TRUST_LANES, pi,
                    pi - step_size * ui if rectified_norm else ui)
    acc[0] += lane_total(weights)
    acc[1] += lane_total(updates)


cdef int lamb_reduced = 2


cdef void lamb_chunk(floating* p, const floating* g, floating** state, Py_ssize_t n,
                     const void* args, const double* segment) noexcept nogil:
    """LAMB on one piece; state = [exp_avg m, exp_avg_sq v]; segment = [Σ p², Σ w²].

        g ← grad_scale·g;  p ← decay·p
        m ← β₁ m + β₃ g;   v ← β₂ v + (1 − β₂) g²
        u = m / (√v + ε)  (m, for rectify's SGD steps);   u ← u + λ p  (L2)
        p ← p − (s · r) · u,   r the segment's trust ratio (lamb_ratio; 1 with adam)

    p is only decayed on rectify's steps that make no update.
    """
    cdef const lamb_args* a = <const lamb_args*>args
    cdef floating* m = state[0]
    cdef floating* v = state[1]
    cdef floating beta1 = <floating>a.beta1, beta3 = <floating>a.beta3
    cdef floating beta2 = <floating>a.beta2, one_minus_beta2 = <floating>(1.0 - a.beta2)
    cdef floating eps = <floating>a.eps, weight_decay = <floating>a.weight_decay
    cdef floating decay = <floating>a.decay, grad_scale = <floating>a.grad_scale
    cdef floating coefficient = <floating>(a.step_size * lamb_ratio(a, segment))
    cdef bint adaptive = a.adaptive, update = a.update
    cdef floating pi, ui
    cdef Py_ssize_t i
    for i in range(n):
        pi = decay * p[i]
        ui = lamb_direction(pi, grad_scale * g[i], m, v, i, beta1, beta3, beta2,
                            one_minus_beta2, eps, weight_decay, adaptive, True)
        p[i] = pi - coefficient * ui if update else pi
