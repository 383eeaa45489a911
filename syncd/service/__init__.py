"""What `syncd run` does: the daemon under systemd (its command is syncd.cli.run_command).

    schedule      when it runs: interval, jitter, deadline, backoff after failures
    cycle         one run: read the desired state, converge within the deadline, summarise
    daemon        the scheduler loop: life cycle, signals, reloads, reports
    leadership    on a shared state: stand by until the lock is ours, then run the daemon
    notify        the systemd notify protocol, spoken directly over $NOTIFY_SOCKET
    metrics       the Prometheus metrics and the health rule
    listener      the HTTP listener for /metrics and /healthz, in a thread
    startup       `syncd run` with its settings: the lock or a standby, then the daemon

May import `syncd.engine` and everything below it; never `syncd.cli`.
"""
