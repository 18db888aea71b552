"""The web app (``invcomp serve``): compression as background jobs behind a JSON API and a few pages.

It calls the library's use cases (:func:`invcomp.service.encode.build_encoder` and
:func:`~invcomp.service.encode.encode_items`, :func:`invcomp.service.decode.decode_item`), never its own encoder or
decoder, so a file coded here is the file ``invcomp encode`` writes. The modules:

- :mod:`~invcomp.web.config`: :class:`WebConfig` (host, data folder, workers, token, every limit);
- :mod:`~invcomp.web.store`: the persistent job store (SQLite in ``--data``) and each job's folder;
- :mod:`~invcomp.web.tasks`: what a job of each kind runs (encode, decode, compare), on files in its folder;
- :mod:`~invcomp.web.worker`: the loop of a worker process (claim, run, report progress, obey a cancel);
- :mod:`~invcomp.web.pool`: the worker processes, their supervision, restarts and retention;
- :mod:`~invcomp.web.security`: bind/token rules, CSRF, Host and Origin checks, headers, body limits;
- :mod:`~invcomp.web.uploads`: uploads and options checked by decoding them, before any job exists;
- :mod:`~invcomp.web.catalog`: the model registry and the ``invcomp bench`` results folders, by name;
- :mod:`~invcomp.web.api`, :mod:`~invcomp.web.pages`: the JSON API and the HTML pages (which use it);
- :mod:`~invcomp.web.app`: :func:`~invcomp.web.app.create_app`.

FastAPI, uvicorn and python-multipart come with the ``web`` extra (``pip install 'invcomp[web]'``).
"""
