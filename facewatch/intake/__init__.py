"""Intake: what is in the watched folders -> complete image files queued in the store.

Owns watchdog's handlers (`handlers`: events become notes), the watcher (`watcher`: settling,
one store transaction per burst), the walk that catches what events missed (`reconcile`) and
which files count as images (`files`). May import `store` and `config` only.
"""
