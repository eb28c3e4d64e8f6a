"""The identity graph: which identifiers belong to one person (or account), explainable and reversible."""
