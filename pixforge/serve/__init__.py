"""``pixforge serve``: a FastAPI app that serves trained runs over HTTP, with dynamic micro-batching.

The contract (stable; the studio builds on it, extend it without breaking it):

- :class:`pixforge.serve.app.ServeSettings` (runs, device, max_batch, max_wait_ms, token, max_pixels,
  max_bytes, amp) and :func:`pixforge.serve.app.create_app` ``(settings) -> fastapi.FastAPI``. The runs load
  once, in ``create_app``; a bad run raises :class:`~pixforge.errors.PixforgeError`.
- ``app.state.registry``: a :class:`~pixforge.serve.registry.ModelRegistry` with ``names()`` and ``get(name)``
  (``KeyError`` for an unknown name), giving a :class:`~pixforge.serve.registry.ServedModel` with ``.name``
  (the run directory's name, ``-2``, ``-3``, ... appended when two runs share one), ``.translator`` (a
  :class:`pixforge.api.Translator`) and ``.info()`` (what ``GET /v1/models`` lists).
- ``app.state.batcher``: the :class:`~pixforge.serve.batcher.Batcher`; ``await batcher.submit(name, batch,
  options)`` translates one prepared batch (``Translator.batch_for``: tensors with batch size 1) with
  translation ``options`` (``direction``, ``cluster``, ``style_seed``, ...) and returns
  ``Translator.translate_batch``'s maps (``output`` and the explanation maps) as CPU tensors of batch size 1.
  Requests of the same model, input shapes and options are stacked into one forward pass of at most
  ``max_batch``, waiting at most ``max_wait_ms`` for company; inference runs in one worker thread per device,
  which owns the models: render through ``submit`` rather than calling a served translator from another
  thread. Paper-mode pix2pix models normalise per sample (:func:`pixforge.export.per_sample_norms`), so a
  batch never changes an answer.
- ``app.state.settings``, ``app.state.metrics`` (:class:`~pixforge.serve.metrics.Metrics`).
- HTTP: ``GET /healthz`` (never needs the token), ``GET /v1/models``, ``GET /v1/models/{name}``,
  ``POST /v1/models/{name}/translate`` (multipart: ``image``, or ``label`` and optional ``instance``; form
  options ``direction``, ``cluster``, ``style_seed``, ``explain=region|attention``; answers a PNG, or with
  ``explain`` JSON ``{"model", "images": {name: base64 PNG}}``), ``GET /metrics`` (Prometheus text), ``/docs``.
  Every error is JSON ``{"error": "One sentence."}`` with a 4xx status (404 unknown model, 401 bad token,
  413 too large, 415 not an image, 422 bad content or option); with a token, send ``Authorization: Bearer T``.
- :func:`pixforge.serve.server.run` ``(app, host="127.0.0.1", port=8000)``: uvicorn; SIGTERM drains the
  requests in flight and returns (the CLI then exits 0). :func:`pixforge.serve.server.background` ``(app)``
  serves from a thread on a free port of 127.0.0.1 and yields the base URL (tests, benchmarks).
- Helpers: :func:`pixforge.serve.app.to_images` (maps -> PIL images at the input's size),
  :func:`pixforge.serve.app.png_bytes`, :class:`pixforge.serve.inputs.RequestError` (status + one sentence,
  answered as the JSON error) and the upload checks of :mod:`pixforge.serve.inputs`.

Nothing in a request names a file: only the runs named at start are served.
"""
