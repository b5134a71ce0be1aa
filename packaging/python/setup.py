# The wheel holds cdc.so, native code that does not use Python's C API: one
# wheel per platform (py3-none-linux_x86_64), for any Python 3. Metadata is in
# pyproject.toml.
from setuptools import Distribution, setup

try:  # setuptools >= 70.1
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # Debian bookworm: the wheel package's
    from wheel.bdist_wheel import bdist_wheel


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # so the package goes to platlib, beside its .so
        return True


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
