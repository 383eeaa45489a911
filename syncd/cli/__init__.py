"""The command line: a thin layer over the library, and what people see of it.

    main               the click group, its exit codes, and the list of commands
    options            the flags every API command shares, and loading what they name
    converge_commands  `plan`, `show` and `apply`
    apply_view         what `apply` shows a person: the plan, one question, each change as it ends
    stopping           how `plan` and `apply` stop: on SIGTERM as on Ctrl-C
    desired_commands   `validate`, `schema`, `render` and `import`
    audit_command      `audit`
    operator_commands  `suspend`, `resume`, `approve`, `reject`: the operator's word to a daemon
    state_commands     `state migrate`: the history moved to another backend
    run_command        `run`: the daemon (what it does is syncd.service)
    status_command     `status`: what the daemon did, from the state
    user_status        `status --user U`: what syncd knows of one user
    demo               `demo`: plan → apply → plan against a local sandbox
    render             plans, apply reports and the audit trail, as a careful diff
    progress           a progress bar while accounts are read, only when a person watches

`sandbox` is syncd.sandbox.command's, beside the server it starts.

The top layer: may import every other package, and none imports it.
"""
