"""The composition root: the `merci` command, the assembly of each face's app, the dev
runtime with its embedded PostgreSQL, the scheduler's loop, demo and synthetic data.

It imports the domain (merci/), the faces (api/, directory/), their shared plumbing
(graph/) and the workers; nothing imports it (tests and benchmarks aside), see
docs/architecture.md."""
