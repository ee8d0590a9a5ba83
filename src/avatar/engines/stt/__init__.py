"""Speech-to-text engines: faster-whisper, Moonshine (streaming), OpenAI-compatible remotes."""
