"""Consumer stages: small classes the runner drives (see ``pipeline.runner.Stage``)."""
