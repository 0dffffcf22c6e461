"""`make mutate`: mutation testing of the core, the services and the security checks (see tests/MUTATION.md)."""
