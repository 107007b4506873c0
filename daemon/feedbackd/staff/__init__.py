"""The staff loop by email: staff receive cases by mail and answer from their own client.

- ``address``: the signed staff reply address of a case (``feedback+FB-000123.<sig>@domain``).
- ``authres``: reading the topmost ``Authentication-Results`` header (RFC 8601) for DKIM/SPF pass.
- ``verify``: whether a reply to a staff reply address acts as staff (sender, signature, authentication).
- ``quotes``: the new text of a reply, without quoted history and signature.
- ``commands``: the ``#status``/``#状态`` command lines at the top of a staff reply.
- ``satisfaction``: the citizen's answer to "are you satisfied?".
- ``actions``: what commands do to a case (pure), and committing it.
- ``mail``: the mail staff and citizens receive from the loop.
- ``loop``: the service that applies a staff reply and queues its mail.
"""
