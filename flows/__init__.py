"""Prefect flows: thin wrappers over plain functions of features/ and models/."""
