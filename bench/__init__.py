"""The benchmark suite: the service beside its references, measured in one run (`make bench`)."""
