"""Permission requests: an agent asks, a person decides, exactly once, audited."""
