"""The REST routers, one module per resource: parse, call a service, map to a public schema."""
