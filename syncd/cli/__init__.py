"""The command line: a thin layer over the library, and what people see of it.

    main      the click group, its exit codes, and the commands of one converge
    render    plans, apply reports and the audit trail, as a careful diff
    progress  a progress bar while accounts are read, only when a person watches
    demo      `syncd demo`: plan → apply → plan against a local sandbox

The top layer: may import every other package, and none imports it.
"""
