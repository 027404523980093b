/* The plain loops of plain.h for one storage type: included once per type with T (the
   element type), ROOT (its square root), ABS (its absolute value) and PLAIN(name) (the
   function's name for that type) defined.

   Each loop is a rule's update at its benchmark options, written as a user would write it by
   hand: one `parallel for` over the elements, the step's scalars precomputed (s[]), no
   option that the benchmark does not use. a = [parameter, gradient, state...]. */

static void PLAIN(sgd)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* momentum μ, no dampening: b ← μ b + g; p ← p − γ b.  s = [γ, μ] */
    T* p = a[0]; const T* g = a[1]; T* b = a[2];
    const T lr = (T)s[0], mu = (T)s[1];
    EACH_ELEMENT(i) {
        T bi = mu * b[i] + g[i];
        b[i] = bi;
        p[i] = p[i] - lr * bi;
    }
}

static void PLAIN(adagrad)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* s ← s + g²; p ← p − γ g / (√s + ε).  s = [γ, ε] */
    T* p = a[0]; const T* g = a[1]; T* sum = a[2];
    const T lr = (T)s[0], eps = (T)s[1];
    EACH_ELEMENT(i) {
        T gi = g[i], si = sum[i] + gi * gi;
        sum[i] = si;
        p[i] = p[i] - lr * gi / (ROOT(si) + eps);
    }
}

static void PLAIN(rmsprop)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* v ← α v + (1 − α) g²; p ← p − γ g / (√v + ε).  s = [γ, α, ε] */
    T* p = a[0]; const T* g = a[1]; T* v = a[2];
    const T lr = (T)s[0], alpha = (T)s[1], one_minus_alpha = (T)(1.0 - s[1]), eps = (T)s[2];
    EACH_ELEMENT(i) {
        T gi = g[i], vi = alpha * v[i] + one_minus_alpha * gi * gi;
        v[i] = vi;
        p[i] = p[i] - lr * gi / (ROOT(vi) + eps);
    }
}

static void PLAIN(adam)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* p ← decay·p (AdamW; 1 for Adam); m ← β₁ m + (1 − β₁) g; v ← β₂ v + (1 − β₂) g²;
       p ← p − step_size · m / (√v / bias2_sqrt + ε).
       s = [step_size, bias2_sqrt, β₁, β₂, ε, decay] */
    T* p = a[0]; const T* g = a[1]; T* m = a[2]; T* v = a[3];
    const T step_size = (T)s[0], bias2_sqrt = (T)s[1], beta1 = (T)s[2], beta2 = (T)s[3];
    const T one_minus_beta1 = (T)(1.0 - s[2]), one_minus_beta2 = (T)(1.0 - s[3]);
    const T eps = (T)s[4], decay = (T)s[5];
    EACH_ELEMENT(i) {
        T gi = g[i], pi = decay * p[i];
        T mi = beta1 * m[i] + one_minus_beta1 * gi;
        T vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (ROOT(vi) / bias2_sqrt + eps);
    }
}

static void PLAIN(adadelta)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* v ← ρ v + (1 − ρ) g²; d = √(u + ε) / √(v + ε) · g; u ← ρ u + (1 − ρ) d²; p ← p − γ d.
       s = [γ, ρ, ε] */
    T* p = a[0]; const T* g = a[1]; T* v = a[2]; T* u = a[3];
    const T lr = (T)s[0], rho = (T)s[1], one_minus_rho = (T)(1.0 - s[1]), eps = (T)s[2];
    EACH_ELEMENT(i) {
        T gi = g[i], vi = rho * v[i] + one_minus_rho * gi * gi;
        T d = ROOT(u[i] + eps) / ROOT(vi + eps) * gi;
        v[i] = vi;
        u[i] = rho * u[i] + one_minus_rho * d * d;
        p[i] = p[i] - lr * d;
    }
}

static void PLAIN(adamax)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* m ← β₁ m + (1 − β₁) g; u ← max(β₂ u, |g| + ε); p ← p − step_size · m / u.
       s = [step_size, β₁, β₂, ε] */
    T* p = a[0]; const T* g = a[1]; T* m = a[2]; T* u = a[3];
    const T step_size = (T)s[0], beta1 = (T)s[1], one_minus_beta1 = (T)(1.0 - s[1]);
    const T beta2 = (T)s[2], eps = (T)s[3];
    EACH_ELEMENT(i) {
        T gi = g[i], mi = beta1 * m[i] + one_minus_beta1 * gi;
        T ui = beta2 * u[i], bound = ABS(gi) + eps;
        ui = ui > bound ? ui : bound;
        m[i] = mi;
        u[i] = ui;
        p[i] = p[i] - step_size * mi / ui;
    }
}

static void PLAIN(nadam)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* m, v as Adam's; d = √(v / bias2) + ε; p ← p − grad_coef · g / d − avg_coef · m / d.
       s = [grad_coef, avg_coef, bias2, β₁, β₂, ε] */
    T* p = a[0]; const T* g = a[1]; T* m = a[2]; T* v = a[3];
    const T grad_coef = (T)s[0], avg_coef = (T)s[1], bias2 = (T)s[2];
    const T beta1 = (T)s[3], beta2 = (T)s[4], eps = (T)s[5];
    const T one_minus_beta1 = (T)(1.0 - s[3]), one_minus_beta2 = (T)(1.0 - s[4]);
    EACH_ELEMENT(i) {
        T gi = g[i];
        T mi = beta1 * m[i] + one_minus_beta1 * gi;
        T vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        T d = ROOT(vi / bias2) + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - grad_coef * gi / d - avg_coef * mi / d;
    }
}

static void PLAIN(lion)(T** a, ptrdiff_t n, const double* s, int threads) {
    /* c = β₁ m + (1 − β₁) g; p ← p − γ sign(c); m ← β₂ m + (1 − β₂) g.  s = [γ, β₁, β₂] */
    T* p = a[0]; const T* g = a[1]; T* m = a[2];
    const T lr = (T)s[0], beta1 = (T)s[1], one_minus_beta1 = (T)(1.0 - s[1]);
    const T beta2 = (T)s[2], one_minus_beta2 = (T)(1.0 - s[2]), zero = (T)0;
    EACH_ELEMENT(i) {
        T gi = g[i], mi = m[i], c = beta1 * mi + one_minus_beta1 * gi;
        p[i] = p[i] - lr * ((T)(c > zero) - (T)(c < zero));
        m[i] = beta2 * mi + one_minus_beta2 * gi;
    }
}
