"""moto_server, with DynamoDB requests served one at a time.

DynamoDB applies each UpdateItem atomically: twenty concurrent `ADD count :one` updates add
twenty. moto serves requests on threads and reads, changes and writes an item without a lock, so
concurrent updates of one item can lose all but one. The tests of the alert windows run twenty
alerters at once against one item; this server keeps their counts exact. Every other service
(SQS long polls among them) is still served concurrently.

Usage: python3 moto_one_dynamodb_request_at_a_time.py PORT
"""

import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

moto = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def serve(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb:
            return list(moto(environ, start_response))
    return moto(environ, start_response)


run_simple("127.0.0.1", int(sys.argv[1]), serve, threaded=True)
