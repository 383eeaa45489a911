"""The pure core: the desired-state values, the API's field rules, the live values, the plan.

    fields    the API's vocabulary: field names, valid usernames, emails and URLs, Gravatar
    desired   what operators say each account must look like (always valid once built)
    live      what the API says an account looks like now, checked for shape
    not_kept  writes the server accepted and did not keep, and what to write instead
    plan      desired + live → the actions that converge them, as frozen values
    jsondoc   the JSON documents that carry a plan (one change per line)
    api_url   the API URL in the one form that names whose answers and records a state keeps

No I/O and no clock: nothing here opens a file or a socket, reads the time or
logs. May import the standard library and `syncd.visible` only; every other
layer may import it (import-linter enforces both, see pyproject.toml).
"""
