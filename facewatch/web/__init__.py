"""The web interface: the live index in a browser, to see and name people where their faces are
(`app`: Flask routes over the store's own calls, the same the command line makes; `security`:
the per-install token, its cookie and the CSRF check; `pictures`: photos and face crops, made once
per content from the same reduced decodes as the gallery; `server`: waitress, from `facewatch
serve` or inside the daemon with `web.listen`). May import results, people, analysis, store and
config; the service and the command line import it.
"""
