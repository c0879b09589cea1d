"""labinterp: interpretation of serum calcium, magnesium and potassium results."""

__version__ = "0.2.0"
