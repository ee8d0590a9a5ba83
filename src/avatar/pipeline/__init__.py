"""The voice loop: one ``VoiceSession`` per connection, built on pure, clock-free pieces
(endpointing, text chunking, context trimming, echo and hallucination filters) and ``Turn``."""
