"""Talking to the accounts API v1.1: one audited, bounded, retrying client.

    credentials  which secret authenticates each user's calls, never shown
    nocookies    a cookie jar that keeps nothing: no cookie crosses between users
    lanes        one keep-alive connection per request in flight
    pool         bounded concurrency over a stream of work items
    client       the five calls, error mapping, retries, body limits

May import `syncd.core` and the top-level modules; not the desired-state
reader, the state or anything above.
"""
