"""Results: the index read back for people and scripts: `status`, `export`, the static gallery
and `show --draw`. Reads through the store's contract; may import `people` (face crops),
`analysis.decode`, `intake.files`, `store` and `config`.
"""
