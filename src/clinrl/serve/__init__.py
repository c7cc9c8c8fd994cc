"""``clinrl serve``: an OpenAI-compatible HTTP server for a local model, plus DRG coding and PRM scoring.

    from clinrl.serve import ServeSettings, create_app
    app = create_app(ServeSettings(model="runs/sft", prm="runs/prm"))

Modules: :mod:`~clinrl.serve.settings` (options, bind/token checks), :mod:`~clinrl.serve.queue` (bounded
model queue), :mod:`~clinrl.serve.guard` (auth, body limit, request log), :mod:`~clinrl.serve.schemas`
(request bodies), :mod:`~clinrl.serve.tasks` (DRG coding, PRM scoring), :mod:`~clinrl.serve.streaming`
(token streaming), :mod:`~clinrl.serve.problems` (error answers), :mod:`~clinrl.serve.runtime` (shared
state), :mod:`~clinrl.serve.generation` (completions), :mod:`~clinrl.serve.routes` (endpoints), :mod:`~clinrl.serve.app`
(the app). Endpoints: ``docs/serving.md``.
"""

from clinrl.serve.app import create_app
from clinrl.serve.settings import ServeSettings, check_bind

__all__ = ["ServeSettings", "check_bind", "create_app"]
