"""Built-in workflows that ship with plait (the demo run by ``plait demo``).

They live in a module, not in a script, so that a daemon worker can import
them again to continue them from a checkpoint.
"""
