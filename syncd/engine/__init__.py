"""One reconciliation: desired state → live state → plan → guard → apply, audited.

    fetching   the live state: the cache first, then the API for what is missing or stale
    applying   the writes, made safe to repeat and recorded in the audit trail
    outcome    how a converge ended: the users that failed, and ok / partial / failed
    planfile   saved plans (`plan --out`, `apply plan.json`) and their staleness check
    reconcile  the glue shared by `plan`, `apply` and the daemon
    importing  `syncd import`: a desired-state file written from the live accounts

May import the edges below it (`syncd.desired`, `syncd.api`, `syncd.state`),
`syncd.core` and the top-level modules; never `syncd.service` or `syncd.cli`.
"""
