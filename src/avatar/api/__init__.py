"""The HTTP and WebSocket edge: app factory, routers, schemas, auth, limits, the composition root.

Thin by design: requests are parsed and checked here, then handed to ``services`` (REST) or a
``pipeline.VoiceSession`` (``/ws/chat``). Nothing below this package imports it.
"""
