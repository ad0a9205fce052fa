"""The verifier library that other programs embed: no click, no printing, no global state.

Supported API (everything else here is internal):

- :class:`tools.client.http.NodeClient`: a synchronous client of one node's HTTP API (specs/api.md); it
  trusts nothing it receives, and every failure is a :class:`tools.client.http.ClientError`.
- :class:`tools.client.replica.Replica`: a local verified replica of the ledger that syncs from any node
  while trusting none (the steps are in :mod:`tools.client.sync`, whose :class:`~tools.client.sync.SyncReport`
  says what a sync did); its ``view()`` is what :func:`credentials.verify.verify_credential` judges against.

Like python-tuf's ``ngclient``, one object holds the trusted state (the replica, starting from a pinned
genesis), each step is explicit (open or bootstrap, sync, view), and the caller passes ``now``.
"""
