"""The engines: one small Protocol per capability (VAD, STT, LLM, TTS, speaker), their local and
remote implementations, the registry that imports them lazily, and the hub that shares them."""
