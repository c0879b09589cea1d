"""The pure core of labinterp: reference data, unit factors and the interpretation engine."""

from labinterp.core.engine import Engine
from labinterp.core.errors import DataError, FieldError, InvalidInput
from labinterp.core.knowledge import Knowledge, load_knowledge
from labinterp.core.model import Panel, Patient, ResultInput, SentInterval
from labinterp.core.rules import classify_columns

__all__ = [
    "DataError",
    "Engine",
    "FieldError",
    "InvalidInput",
    "Knowledge",
    "Panel",
    "Patient",
    "ResultInput",
    "SentInterval",
    "classify_columns",
    "load_knowledge",
]
