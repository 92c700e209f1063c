"""schemathesis hooks of the admin run (`openapi_schemathesis.rs`).

Destructive admin actions re-check the admin's password (`admin_password`): generated bodies
get the real one, so the run reaches the actions instead of stopping at the 403 of a wrong
password. Cases that act on the run's own account or device are skipped: resetting the admin's
password or revoking its device ends the run's credential, and every later case would only
see 401 (the server's refusals of blocking, demoting and deleting oneself are still exercised
by the other ids the stateful phase finds, and pinned by the admin API tests).
"""

import os

import schemathesis

PASSWORD = os.environ["CONCORD_ADMIN_PASSWORD"]
OWN_IDS = {os.environ["CONCORD_ADMIN_USER_ID"], os.environ["CONCORD_ADMIN_DEVICE_ID"]}


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict):
        body["admin_password"] = PASSWORD
    return body


@schemathesis.hook
def filter_case(context, case):
    return not OWN_IDS.intersection(str(v) for v in (case.path_parameters or {}).values())
