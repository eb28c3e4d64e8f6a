"""The item catalog: descriptions and availability imported from a file (``cdp catalog import``)."""
