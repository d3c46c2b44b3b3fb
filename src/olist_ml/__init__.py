"""olist-ml: raw Olist marketplace tables to tracked ML decisions."""

__version__ = "0.1.0"
