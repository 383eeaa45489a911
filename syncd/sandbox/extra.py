"""Whether the sandbox's web server, the extra `syncd[sandbox]`, is installed.

`pip install syncd` carries no web framework: Starlette and uvicorn come with
`pip install 'syncd[sandbox]'`. The commands that serve a sandbox (`syncd
sandbox`, and `syncd demo`, which runs one) look for them before anything
else, so that without the extra they say what to install, not an ImportError.
"""

from __future__ import annotations

import importlib.util

from syncd.errors import UsageError


def require_sandbox_extra(command: str) -> None:
    """Raise a one-line UsageError naming the extra if its modules are not installed."""
    # find_spec looks the modules up without importing them: `syncd demo` stays fast.
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"{command} needs the extra syncd[sandbox] ({' and '.join(missing)} "
            "not installed): pip install 'syncd[sandbox]'"
        )
