"""A faithful local server of the docker.io accounts API v1.1, for demos, tests and benchmarks."""
