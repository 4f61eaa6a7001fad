"""The floor every layer stands on: the one user-facing error type and CLI boundary, atomic writes and
content keys, the one cached-artefact helper (`cached`), options read from argparse, progress bars.

May import: the standard library, numpy and tqdm only; nothing else of ArtTRT.
"""
