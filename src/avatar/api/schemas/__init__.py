"""Request and response schemas of the REST API, kept apart from the storage tables."""
