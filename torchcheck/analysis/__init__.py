"""Shared facts about a file that several rules need: imports, values, grad and eval context."""
