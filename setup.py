"""The compiled extension list; everything else is in pyproject.toml.

The Cython engine is an accelerator, not a requirement: when it cannot be
generated or compiled, the build still succeeds without it and the package
runs on the pure-Python twin (msgpack's setup.py does the same). Set
POINTSLEDGER_PURE_PYTHON_BUILD=1 to skip the extension on purpose.
CI catches a silent miss by setting POINTSLEDGER_REQUIRE_EXTENSION=1 at run time.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ENGINE_SOURCE = "src/pointsledger/_engine_c.pyx"

# The one place the engine's Cython directives are set.
COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}


def warn(message):
    print(f"WARNING: {message}; pointsledger will use the pure-Python engine", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into a warning instead of a failed install."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # no compiler at all (DistutilsPlatformError and kin)
            warn(f"could not build C extensions: {error}")

    def build_extension(self, extension):
        try:
            super().build_extension(extension)
        except Exception as error:  # CCompilerError, CompileError, LinkError...
            warn(f"could not compile {extension.name}: {error}")


def engine_extensions():
    if os.environ.get("POINTSLEDGER_PURE_PYTHON_BUILD") == "1":
        print("POINTSLEDGER_PURE_PYTHON_BUILD=1: building without the Cython engine", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize

        extension = Extension(
            "pointsledger._engine_c",
            [ENGINE_SOURCE],
            extra_compile_args=["-O3"],
        )
        return cythonize([extension], compiler_directives=COMPILER_DIRECTIVES)
    except Exception as error:  # Cython missing, or the .pyx does not translate
        warn(f"could not cythonize {ENGINE_SOURCE}: {error}")
        return []


setup(ext_modules=engine_extensions(), cmdclass={"build_ext": OptionalBuildExt})
