"""``pixforge serve``: a FastAPI app that serves trained runs (or their ONNX exports) over HTTP, with dynamic
micro-batching, bounded queues and timeouts.

The contract (stable; the studio builds on it, extend it without breaking it):

- :class:`pixforge.serve.app.ServeSettings` (defined in :mod:`pixforge.serve.settings`: runs, device, max_batch,
  max_wait_ms, token, max_pixels, max_bytes, amp, max_queue, timeout_ms, max_batch_pixels, header_timeout_s,
  body_timeout_s, cors_origins; a run may be a :class:`~pixforge.serve.settings.ModelSpec` with its own name and
  batching), :func:`pixforge.serve.settings.load_config` (a YAML serve config file) and
  :func:`pixforge.serve.app.create_app` ``(settings) -> fastapi.FastAPI``. The runs load once, in
  ``create_app``; a bad run raises :class:`~pixforge.errors.PixforgeError`.
- ``app.state.registry``: a :class:`~pixforge.serve.registry.ModelRegistry` with ``names()`` and ``get(name)``
  (``KeyError`` for an unknown name), giving a :class:`~pixforge.serve.registry.ServedModel` with ``.name``
  (the run directory's name, or an export's stem, ``-2``, ``-3``, ... appended when two share one),
  ``.translator`` (a :class:`pixforge.api.Translator`; for an ``.onnx`` file an
  :class:`~pixforge.export.OnnxTranslator`), ``.batching`` and ``.info()`` (what ``GET /v1/models`` lists).
- ``app.state.batcher``: the :class:`~pixforge.serve.batcher.Batcher`; ``await batcher.submit(name, batch,
  options, timeout_s=None, disconnected=None)`` translates one prepared batch (``Translator.batch_for``: tensors
  with batch size 1) with translation ``options`` (``direction``, ``cluster``, ``style_seed``, ...) and returns
  ``Translator.translate_batch``'s maps (``output`` and the explanation maps) as CPU tensors of batch size 1.
  Requests of the same model, input shapes and options are stacked into one forward pass of at most the model's
  ``max_batch`` and ``max_batch_pixels``, waiting at most ``max_wait_ms`` for company; inference runs in one
  worker thread per device, which owns the models: render through ``submit`` rather than calling a served
  translator from another thread. Beyond a model's ``max_queue`` waiting requests ``submit`` raises
  :class:`~pixforge.serve.batcher.Refused` (503, ``Retry-After``); past ``timeout_s`` a request still waiting is
  dropped (504) and once ``disconnected()`` returns it is dropped (:class:`~pixforge.serve.batcher.ClientGone`),
  in both cases before it costs a forward pass. Paper-mode pix2pix models normalise per sample
  (:func:`pixforge.export.per_sample_norms`), so a batch never changes an answer.
- ``app.state.settings``, ``app.state.metrics`` (:class:`~pixforge.serve.metrics.Metrics`),
  ``app.state.lifecycle`` (loading / ready / draining: ``/readyz``).
- HTTP: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness: 503 while the models' first run is under way and
  from SIGTERM on), ``GET /v1/models``, ``GET /v1/models/{name}``, ``POST /v1/models/{name}/translate``
  (multipart: ``image``, or ``label`` and optional ``instance``, each once; form options ``direction``,
  ``cluster``, ``style_seed``, ``explain=region|attention``; answers a PNG, or with ``explain`` JSON ``{"model",
  "images": {name: base64 PNG}}``), ``GET /metrics`` (Prometheus text), ``/docs``. Every answer carries
  ``X-Request-ID`` (the client's, when it sent a plain one). Every error is JSON ``{"error": "One sentence."}``
  (400 malformed multipart, 401 bad token with ``WWW-Authenticate``, 404 unknown model, 408 slow body, 413 too
  large, 415 not an image, 422 bad content or option, 503 queue full or draining, 504 deadline, and 500 with the
  request id for anything unexpected, its traceback logged); the OpenAPI document lists each endpoint's. With a
  token, send ``Authorization: Bearer T`` (the scheme in any case); ``/healthz``, ``/readyz`` and ``/docs`` stay
  open (docs show the API's shape only; their "Authorize" button takes the token for "Try it out").
- :func:`pixforge.serve.server.run` ``(app, host="127.0.0.1", port=8000)``: uvicorn with header and body read
  timeouts; SIGTERM drains the requests in flight (uploads still arriving are answered 503 at once) and returns
  (the CLI then exits 0). :func:`pixforge.serve.server.background` ``(app)`` serves from a thread on a free port
  of 127.0.0.1 and yields the base URL (tests, benchmarks).
- Helpers: :func:`pixforge.serve.app.to_images` (maps -> PIL images at the input's size),
  :func:`pixforge.serve.app.png_bytes`, :class:`pixforge.serve.inputs.RequestError` (status + one sentence,
  answered as the JSON error) and the upload checks of :mod:`pixforge.serve.inputs`.

Nothing in a request names a file: only the runs named at start are served.
"""
