"""The wire format: FIPA-ACL envelopes as bytes, below both the runtime and messaging.

`codec` validates and encodes envelopes (the API's rules), `envelope` stamps the messages
agents send (the hot path's rules: sender, ids, conversation inheritance), `header` reads the
few envelope fields delivery decides on, `timestamps` writes the node's one RFC 3339 format
(``created_at``; the API and the logs use it too). Nothing here knows about agents, mailboxes
or storage; `caxton.runtime` and `caxton.messaging` both build on it.
"""
