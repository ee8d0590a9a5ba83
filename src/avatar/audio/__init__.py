"""Audio values and codecs: :class:`PcmAudio`, decoding untrusted uploads, encoding, resampling."""
