"""The model catalog (named models, sources, hashes, licences) and the verified on-disk store."""
