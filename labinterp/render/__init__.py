"""Renderers: typed outcomes -> v1 JSON, FHIR resources, CDS cards, CSV rows, HL7 annotation (pure)."""
