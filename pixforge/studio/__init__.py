"""pixforge studio: interactive editing and human perceptual studies in the browser.

The studio is the serve app (:func:`pixforge.serve.app.create_app`) with the studio's routers and pages
added (:func:`pixforge.studio.app.create_studio_app`): translate and paint pages that talk to the same HTTP
API as any client, and perceptual studies (:mod:`~pixforge.studio.protocol`) kept in SQLite
(:mod:`~pixforge.studio.store`) and reported with confidence intervals (:mod:`~pixforge.studio.report`).
"""
