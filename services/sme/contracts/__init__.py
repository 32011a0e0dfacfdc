"""Wire contracts: the pydantic models of every message on a topic. JSON Schemas in
`schemas/` are generated from them (`sme schemas`), and a test fails when they drift."""
