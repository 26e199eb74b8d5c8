"""Resolving and loading HuggingFace TF models: packaged names, local folders, hub ids."""
