"""Sources with write keys, and scoped API tokens; secrets are stored only as hashes."""
