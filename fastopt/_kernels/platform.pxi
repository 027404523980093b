# What this module was built with and what the CPU it runs on supports.

cdef extern from "cpu.h":
    int fastopt_cpu_level() noexcept nogil
    const char* FASTOPT_COMPILER

COMPILER = FASTOPT_COMPILER.decode()
LEVELS = ("baseline", "avx2", "avx512")


def cpu_variants():
    """The kernel variants this CPU can run, widest last."""
    return LEVELS[: fastopt_cpu_level() + 1]
