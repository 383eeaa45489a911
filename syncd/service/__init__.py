"""`syncd run`, the daemon under systemd, and `syncd status`, what it did.

    schedule      when it runs: interval, jitter, deadline, backoff after failures
    cycle         one run: read the desired state, converge within the deadline, summarise
    daemon        the scheduler loop: life cycle, signals, reloads, reports
    leadership    on a shared state: stand by until the lock is ours, then run the daemon
    daemon_state  what the daemon says about itself in the state file, for `status`
    notify        the systemd notify protocol, spoken directly over $NOTIFY_SOCKET
    metrics       the Prometheus metrics and the health rule
    listener      the HTTP listener for /metrics and /healthz, in a thread
    commands      the `run` and `status` commands

May import `syncd.engine` and everything below it; never `syncd.cli`.
"""
