"""Voice activity detection: Silero per 32 ms frame, and offline speech segmentation."""
