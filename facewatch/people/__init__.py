"""People: embedded faces -> people, and what users do with them.

Owns placing faces into people (`stage`: the in-memory index and the stage that saves it),
embeddings as the store keeps them (`vectors`), face crops and contact sheets (`crops`) and
`find --like` (`like`). May import `analysis` (to decode and embed), `intake.files`, `store`
and `config`; never the service or the command line.
"""
