"""A faithful local server of the docker.io accounts API v1.1, for demos, tests and benchmarks.

One idea per module, from the inside out:

    store     accounts, tokens and the API's rules (who may do what, valid bodies); no HTTP
    seed      the starting state: seed files (format in its docstring), generated users
    database  the SQLite file of --db, loaded at start and written through
    ratelimit the global rate limit: one token bucket for every caller, and its headers
    faults    latency, error rate, rate limits and ambiguous writes: decisions only
    runtime   a running sandbox (store + faults + stats) and its resets
    routes    the five API calls over HTTP: auth, bodies, errors
    app       the ASGI app: faults and counting around the API, /_sandbox/ routes
    server    uvicorn in the foreground (`serve`) or in a thread (`serve_in_thread`)
    command   `syncd sandbox`
    extra     whether the extra `syncd[sandbox]` (Starlette, uvicorn) is installed

From Python (tests, `syncd demo`)::

    from syncd.sandbox.runtime import SandboxConfig
    from syncd.sandbox.seed import generate, load_seed_file
    from syncd.sandbox.server import serve_in_thread

    with serve_in_thread(SandboxConfig(generate(10), admin_token="t")) as url:
        ...
"""
