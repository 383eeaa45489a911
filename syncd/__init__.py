"""syncd: keeps docker.io accounts in the state a YAML file in git describes."""

try:
    # setuptools-scm writes it from the git tags when syncd is built or installed.
    from syncd._version import __version__ as __version__
except ImportError:  # a source tree used without installing it
    __version__ = "0.0.0+unknown"
