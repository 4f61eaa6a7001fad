"""Data: the validation preprocessing (`preprocess`, `resample`), the ImageNet class table (`imagenet`),
scanning class folders (`scan`), decoding images (`decode`), the first-pass decoding lanes (`lanes`), the
decoded dataset cache (`cache`), the one set of data options every opening of a dataset goes through
(`options.DataOptions`), formatting an ImageNet download into class folders (`format`) and the photos
that ship in packages (`photos`).

May import: utils.core only. Knows nothing of networks, backends, measurements or reports.
"""
