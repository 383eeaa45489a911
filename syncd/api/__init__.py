"""Talking to the accounts API v1.1: one audited, bounded, retrying client.

    credentials  which secret authenticates each user's calls, never shown
    transport    the httpx clients of every outbound call: route, proxy, roots of trust
    inflating    an answer's body, its size capped while it is inflated
    pool         bounded concurrency over a stream of work items
    pacing       the server's rate-limit headers, and when the next request may start
    control      the process's rate control per API: an AIMD limit and the pacer
    retrying     when to send again: the retry policy's waits, Retry-After in either form
    client       the five calls, each on a one-connection client; errors, retries, body limits

May import `syncd.core` and the top-level modules; not the desired-state
reader, the state or anything above.
"""
