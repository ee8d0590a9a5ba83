"""Speaker encoders: voiceprints (d-vectors) of reference recordings."""
