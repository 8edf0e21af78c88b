"""Background work: child processes, their launcher, worker threads, image loading (kept import-free: the launcher runs without Qt)."""
