/* What the CPU can run and what compiled us: chosen at import, reported by show_config(). */
#ifndef FASTOPT_CPU_H
#define FASTOPT_CPU_H

/* 0: baseline, 1: x86-64-v3 (AVX2), 2: x86-64-v4 (AVX-512); the OS must save the registers,
   which __builtin_cpu_supports checks. Only GCC and clang on x86-64 build the wider variants. */
static int fastopt_cpu_level(void) {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    __builtin_cpu_init();
    int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
          && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")
          && __builtin_cpu_supports("avx");
    int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
          && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
          && __builtin_cpu_supports("avx512vl");
    return v4 ? 2 : v3 ? 1 : 0;
#else
    return 0;
#endif
}

#if defined(__clang__)
#define FASTOPT_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define FASTOPT_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define FASTOPT_STR2(x) #x
#define FASTOPT_STR(x) FASTOPT_STR2(x)
#define FASTOPT_COMPILER "msvc " FASTOPT_STR(_MSC_FULL_VER)
#else
#define FASTOPT_COMPILER "unknown"
#endif

#endif
