"""The shared core: configuration, the store, and the pure math behind every number."""
