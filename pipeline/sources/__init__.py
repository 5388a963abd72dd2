"""Sources: threads that publish what comes from outside (a simulator, files, exchanges)."""
