"""Extension modules, compiler flags and the OpenMP probe; all metadata lives in pyproject.toml.

Environment switches:
  FASTOPT_OPENMP=0          build serial even where the compiler has OpenMP.
  FASTOPT_REQUIRE_OPENMP=1  fail the build if the OpenMP probe fails (CI: never ship a serial
                            wheel by accident).
"""

import os
import platform
import sys
import tempfile
import textwrap

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.sysconfig import customize_compiler

OPENMP_FLAGS = ["-fopenmp"]

# -fno-math-errno lets sqrt vectorise; -ffp-contract=off keeps every build bitwise equal to
# NumPy's rounding (no FMA contraction). Never -ffast-math (changes results, breaks NaN) and
# never -march=native (the wheel runs on other machines).
COMPILE_FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-g0"]


def openmp_probe() -> bool:
    """Compile and link a tiny OpenMP program with the compiler the build will use."""
    source = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += omp_get_num_threads() > 0;
            return n > 0 ? 0 : 1;
        }
        """
    )
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=OPENMP_FLAGS)
            compiler.link_executable(
                objects, os.path.join(tmp, "probe"), extra_postargs=OPENMP_FLAGS
            )
        except Exception:
            return False
    return True


def openmp_flags() -> list[str]:
    if os.environ.get("FASTOPT_OPENMP", "1") == "0":
        print("fastopt: FASTOPT_OPENMP=0, building without OpenMP (serial)", file=sys.stderr)
        return []
    if openmp_probe():
        return OPENMP_FLAGS
    if os.environ.get("FASTOPT_REQUIRE_OPENMP") == "1":
        sys.exit("fastopt: the compiler has no working OpenMP and FASTOPT_REQUIRE_OPENMP=1")
    print(
        "WARNING: fastopt: the compiler has no working OpenMP; building serial kernels",
        file=sys.stderr,
    )
    return []


def compiles_with(flags: list[str]) -> bool:
    """Whether the build's compiler accepts ``flags`` (e.g. a -march it may not know)."""
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flags.c")
        with open(path, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            compiler.compile([path], output_dir=tmp, extra_postargs=flags)
        except Exception:
            return False
    return True


# The kernels are compiled once per SIMD level and fastopt._kernels picks the widest the CPU
# runs; every variant computes bitwise the same results (-ffp-contract=off, same source).
SIMD_VARIANTS = {"baseline": [], "avx2": ["-march=x86-64-v3"], "avx512": ["-march=x86-64-v4"]}


def simd_variants() -> dict[str, list[str]]:
    wide = platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"
    variants = {"baseline": []}
    for name, flags in SIMD_VARIANTS.items():
        if flags and wide and compiles_with(flags):
            variants[name] = flags
        elif flags:
            print(f"fastopt: not building the {name} kernels on this platform/compiler",
                  file=sys.stderr)
    return variants


omp = openmp_flags()
extensions = [
    Extension(
        f"fastopt._kernels.{name}",
        [f"fastopt/_kernels/{name}.pyx"],
        include_dirs=[numpy.get_include(), "fastopt/_kernels"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=COMPILE_FLAGS + flags + omp,
        extra_link_args=omp,
    )
    for name, flags in simd_variants().items()
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )
)
