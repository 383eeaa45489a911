"""What `syncd run` does: the daemon under systemd (its command is syncd.cli.run_command).

    schedule      when it runs: interval, jitter, deadline, backoff after failures
    cycle         one run: read the desired state, converge within the deadline, summarise
    isolation     one user's failure never delays the others: each its own retry time
    deletion_guard  hold the deletions past the limit, apply the rest
    daemon        the scheduler loop: life cycle, signals, reloads, reports
    leadership    on a shared state: stand by until the lock is ours, then run the daemon
    notify        the systemd notify protocol, spoken directly over $NOTIFY_SOCKET
    metrics       the Prometheus metrics and the health rule
    listener      the HTTP listener for /metrics, /healthz, the hooks and the pages, in a thread
    admission     which connections the listener serves, and when: none can starve /healthz
    webhook       POST /hooks/git from GitHub or GitLab starts a cycle now
    hook_relay    a hook that reaches a standby starts a cycle on the active instance
    status        what the daemon did and is doing, from the state: `syncd status`, the pages
    pages, ui     the status pages: one value per page, served over HTTP by Jinja2
    notifications webhooks and Slack told what happened, in the background
    startup       `syncd run` with its settings: the lock or a standby, then the daemon

May import `syncd.engine` and everything below it; never `syncd.cli`.
"""
