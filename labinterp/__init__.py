"""labinterp: interpretation of serum calcium, magnesium and potassium results."""

__version__ = "0.1.0"
