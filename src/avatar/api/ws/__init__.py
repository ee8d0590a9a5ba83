"""The ``/ws/chat`` transport: the connection loop, the wire protocol, session admission."""
