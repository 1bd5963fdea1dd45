"""Mutation testing (`make mutation`): see __main__.py."""
