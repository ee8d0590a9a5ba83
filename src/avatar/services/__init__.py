"""The use cases: conversations, voice profiles, speech, system, backup, integrity, recording.

Each call owns its transaction; the API and the CLI both call here, and this package imports
neither of them.
"""
