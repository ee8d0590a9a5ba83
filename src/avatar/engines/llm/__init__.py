"""Chat engines: llama.cpp locally, any OpenAI-compatible server remotely."""
