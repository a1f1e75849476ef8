"""SAM 2 / SAM 2.1 in PyTorch, with the official module names so official state dicts load as they are."""
