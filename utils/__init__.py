"""ArtTRT's library, in layers that import downward only (docs/architecture.md):

core -> data -> models -> backends -> measure -> report -> study

Each folder's __init__ says what it holds and what it may import; tests/test_architecture.py checks it.
"""
