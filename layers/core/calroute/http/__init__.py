"""What every HTTP handler shares, by concern: the Powertools resolver with OpenAPI + validation and
the error mapping (:mod:`.resolver`), authorisation of the path's user id and operator checks
(:mod:`.auth`), and the Logger / Tracer / Metrics singletons and handler decorators
(:mod:`.observability`).

A handler module is then only::

    app = make_resolver()
    @app.post("/v1/users/<userId>/events")
    def ingest(userId: UserIdPath, body: IngestBody) -> dict: ...
    lambda_handler = make_handler(app)

(``calroute.http`` is a subpackage: modules import it absolutely, ``from calroute.http.resolver
import ...`` or ``from ..http.auth import ...``; the standard library's ``http`` is unaffected.)
"""
