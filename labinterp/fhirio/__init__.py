"""FHIR R4 in and out, shared by the FHIR and CDS Hooks doors: reading, code systems, writing."""
