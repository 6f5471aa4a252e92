"""Reasoning strategies, one module each. Found by name through the `reasoner.strategies` entry points."""
