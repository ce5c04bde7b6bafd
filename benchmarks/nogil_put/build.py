"""Build the issue-15 prototype in place: python benchmarks/nogil_put/build.py"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
os.chdir(here)
setup(name="nogil_put", script_args=["build_ext", "--inplace", "-q"],
      ext_modules=cythonize([Extension("_nogil_put", ["_nogil_put.pyx"], include_dirs=[here],
                                       libraries=["dl"])], quiet=True))
print("built", [name for name in os.listdir(here) if name.endswith(".so")], file=sys.stderr)
