"""Text-to-speech engines: Piper and espeak-ng (fast), cloning engines (hq), remotes, modes."""
