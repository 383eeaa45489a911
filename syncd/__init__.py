"""syncd: keeps docker.io accounts in the state a YAML file in git describes."""

__version__ = "0.1.0"
