"""The marketer console at ``/ui``: server-rendered pages that are clients of the ``/v1`` HTTP APIs.

How it talks to the platform, and why:

* **Reads.** A page handler asks the very ``/v1`` endpoints any API client uses, in process (httpx over
  the app's own ASGI interface: no socket, no second server), with the signed-in user's session cookie.
  So a page can show only what the API gives that user's role, every screen exercises the public API,
  and the console holds no store queries of its own. The HTML, tables and SVG charts are rendered on
  the server from those answers: no JavaScript build, nothing fetched from elsewhere at run time.
* **Actions.** Saving an audience, a split, a replay, a test send ... are ``fetch`` calls from the
  browser (``static/console.js``) to the same ``/v1`` endpoints, with the session cookie and the
  session's CSRF token in ``X-CSRF-Token``. The API's scope check is the one authority on who may do
  what (:data:`cdp.auth.users.ROLE_SCOPES`); the console only greys out what a role can't do.
* **Sessions.** :mod:`serving.console.session`: sign-in with an email and password, a random token in
  an HTTP-only, SameSite=Lax cookie (Secure unless served over plain HTTP on loopback), stored hashed
  server-side with its CSRF token; sign-out deletes it.
"""
