/* Storage types other than the compute type: bfloat16 and float16 loaded into float32 and
   stored back rounded to nearest even, stochastically, or compensated (Kahan).

   Every function is a plain loop over a block of a few hundred elements, of integer and float
   operations only (no table, no branch on the data), so the compiler vectorises it; the bits
   are the same on every SIMD variant. Conversions are written on the bit patterns (memcpy is
   the portable way to reinterpret them), so they need no compiler or CPU support for either
   half-precision type. */
#ifndef FASTOPT_STORAGE_H
#define FASTOPT_STORAGE_H

#include <stdint.h>
#include <math.h>
#include <string.h>

static inline uint32_t fastopt_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float fastopt_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ---------------------------------------------------------------- bfloat16: the high half */
static inline float fastopt_from_bf16(uint16_t h) { return fastopt_float((uint32_t)h << 16); }

/* Round to nearest even; NaN stays a (quiet) NaN, ±Inf stays ±Inf, overflow goes to ±Inf. */
static inline uint16_t fastopt_to_bf16(float x) {
    uint32_t u = fastopt_bits(x);
    uint32_t nan = (u & 0x7fffffffu) > 0x7f800000u;
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)(nan ? ((u >> 16) | 0x40u) : rounded);
}

/* Stochastic rounding: add 16 random bits below the kept ones and truncate, so x rounds up
   with probability equal to its distance from the lower neighbour. */
static inline uint16_t fastopt_to_bf16_stochastic(float x, uint32_t random) {
    uint32_t u = fastopt_bits(x);
    uint32_t nan = (u & 0x7fffffffu) > 0x7f800000u;
    uint32_t rounded = (u + (random & 0xffffu)) >> 16;
    return (uint16_t)(nan ? ((u >> 16) | 0x40u) : rounded);
}

/* ---------------------------------------------------------------- float16 (IEEE binary16) */
static inline float fastopt_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    /* normal: rebias the exponent; Inf/NaN: all-ones exponent; subnormal: 2^-24 * mantissa,
       exact in float32. */
    uint32_t normal = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    uint32_t special = sign | 0x7f800000u | (mantissa << 13);
    float subnormal = (float)mantissa * 5.9604644775390625e-08f;  /* 2^-24 */
    float value = exponent == 0 ? (sign ? -subnormal : subnormal)
                : fastopt_float(exponent == 31 ? special : normal);
    return value;
}

/* Round to nearest even, subnormals and overflow (to ±Inf) included; NaN stays NaN. */
static inline uint16_t fastopt_to_f16(float x) {
    uint32_t u = fastopt_bits(x);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t nan = a > 0x7f800000u;
    /* normal range: below 2^-14 the result is subnormal, from 65520 it is Inf */
    uint32_t normal = ((a - 0x38000000u) + 0xfffu + ((a >> 13) & 1u)) >> 13;
    /* subnormal: the value in units of 2^-24, rounded to nearest even by the FPU's own
       float32 rounding (adding 0.5 and subtracting it rounds at bit 0 of the integer part) */
    float magnitude = fastopt_float(a);
    uint32_t subnormal = fastopt_bits(magnitude * 16777216.0f + 12582912.0f) - 0x4b400000u;
    uint32_t result = a < 0x38800000u ? subnormal : (a >= 0x477ff000u ? 0x7c00u : normal);
    return (uint16_t)(sign | (nan ? 0x7e00u : result));
}

/* ---------------------------------------------------------------- the counter-based generator
   32 random bits for element `index` of a parameter, from a key for (seed, step, parameter):
   the same for any thread count, piece split or SIMD variant, and from a resumed state dict.
   The key is SplitMix64 of the three; the element's bits are a MurmurHash3 finaliser of the
   key's low half plus the index times the golden ratio. */
static inline uint64_t fastopt_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint32_t fastopt_stream_key(uint64_t seed, uint64_t step, uint64_t parameter) {
    return (uint32_t)fastopt_mix64(fastopt_mix64(fastopt_mix64(seed) ^ step) ^ parameter);
}

static inline uint32_t fastopt_random(uint32_t key, uint32_t index) {
    uint32_t h = key + index * 0x9e3779b9u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* ---------------------------------------------------------------- blocks */
static void fastopt_load_bf16(const uint16_t* src, float* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_from_bf16(src[i]);
}

static void fastopt_load_f16(const uint16_t* src, float* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_from_f16(src[i]);
}

static void fastopt_store_bf16(const float* src, uint16_t* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_to_bf16(src[i]);
}

static void fastopt_store_f16(const float* src, uint16_t* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_to_f16(src[i]);
}

/* `first` is the block's first element's index in its parameter. */
static void fastopt_store_bf16_stochastic(const float* src, uint16_t* dst, Py_ssize_t n,
                                          uint32_t key, uint32_t first) {
    for (Py_ssize_t i = 0; i < n; i++)
        dst[i] = fastopt_to_bf16_stochastic(src[i], fastopt_random(key, first + (uint32_t)i));
}

/* Compensated update of a low-precision parameter p with compensation c, both of the storage
   type (`half`: 0 bfloat16, 1 float16): given its value before the step (`old`, exactly as
   stored) and after it in float32 (`new`), with Δ = new − old:
       c ← c + Δ;  p ← p + c;  c ← c + (old − p)
   each result, (old − p) too, rounded to the storage type, as optimi's kahan_sum does. */
static inline void fastopt_kahan_loop(const float* old, const float* new_, uint16_t* p,
                                      uint16_t* c, Py_ssize_t n, const int half) {
    for (Py_ssize_t i = 0; i < n; i++) {
        float comp = half ? fastopt_from_f16(c[i]) : fastopt_from_bf16(c[i]);
        float delta = new_[i] - old[i];
        uint16_t comp1 = half ? fastopt_to_f16(comp + delta) : fastopt_to_bf16(comp + delta);
        float comp1f = half ? fastopt_from_f16(comp1) : fastopt_from_bf16(comp1);
        uint16_t p1 = half ? fastopt_to_f16(old[i] + comp1f) : fastopt_to_bf16(old[i] + comp1f);
        float p1f = half ? fastopt_from_f16(p1) : fastopt_from_bf16(p1);
        float back = half ? fastopt_from_f16(fastopt_to_f16(old[i] - p1f))
                          : fastopt_from_bf16(fastopt_to_bf16(old[i] - p1f));
        p[i] = p1;
        c[i] = half ? fastopt_to_f16(comp1f + back) : fastopt_to_bf16(comp1f + back);
    }
}

/* One loop per storage type, each called with a constant `half`: a loop that tested `half`
   per element computed both types' conversions and did not vectorise (10x slower). */
static void fastopt_store_kahan(const float* old, const float* new_, uint16_t* p, uint16_t* c,
                                Py_ssize_t n, int half) {
    if (half)
        fastopt_kahan_loop(old, new_, p, c, n, 1);
    else
        fastopt_kahan_loop(old, new_, p, c, n, 0);
}

#include "quantise.h"

#endif
