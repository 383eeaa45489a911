"""`syncd run`, the daemon under systemd, and `syncd status`, what it did.

    daemon    the scheduler loop: life cycle, signals, reloads, backoff, reports
    notify    the systemd notify protocol, spoken directly over $NOTIFY_SOCKET
    metrics   Prometheus metrics and the HTTP listener for /metrics and /healthz
    commands  the `run` and `status` commands

May import `syncd.engine` and everything below it; never `syncd.cli`.
"""
